// Load generator: N simulated dfdaemons speaking our /peer protocol to a real supernode process.
// No piece bytes move between simulated peers: a "fetch" is a timer (PIECE_MS x concurrent uploads
// at the source, a shared uplink), then the result is reported exactly as p2p-download.ts does.
// The supernode only sees the control plane; it never checks that bytes moved between peers.
// Written by a reviewer to find what breaks first at a site of hundreds of hosts (npm run
// bench:scale; knobs are environment variables below, e.g. PEERS=256 TASKS=1 BLOB_MIB=128).
import { spawn } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { createServer, Agent, request } from 'node:http';
import { readFileSync, rmSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createMemCgroup } from './memcg.mjs';
const selfLag = monitorEventLoopDelay({ resolution: 10 }); selfLag.enable();

const env = (k, d) => (process.env[k] !== undefined ? Number(process.env[k]) : d);
const PEERS = env('PEERS', 16); // peers per task
const TASKS = env('TASKS', 1);
const BLOB_MIB = env('BLOB_MIB', 128);
const PIECE_MS = env('PIECE_MS', 40); // time to move one piece from an idle source
const BAD = env('BAD', 0); // fraction of peers whose uploads always fail
const VANISH = env('VANISH', 0); // fraction of peers that stop dead after VANISH_AFTER pieces
const VANISH_AFTER = env('VANISH_AFTER', 8);
const SAME_IP = env('SAME_IP', 1); // 1: every peer on 127.0.0.1, distinct ports
const RELAY = env('RELAY', 1);
const CPU_PROF = process.env.CPU_PROF;
const LIMIT_S = env('LIMIT_S', 600);
const MEM_LIMIT_MB = env('SN_MEM_LIMIT_MB', 0); // > 0: the supernode runs in a memory cgroup of this size
const NAME = process.env.RUN ?? `p${PEERS}t${TASKS}`;
const dir = `/tmp/dfts-scale-${NAME}`;
rmSync(dir, { recursive: true, force: true });

// ---- origin: TASKS blobs held in memory, served by digest
const blobs = new Map();
for (let i = 0; i < TASKS; i++) {
  const b = Buffer.allocUnsafe(BLOB_MIB * 1024 * 1024);
  randomFillSync(b, 0, Math.min(b.length, 1 << 20));
  b.writeUInt32BE(i, 0);
  for (let off = 1 << 20; off < b.length; off += 1 << 20) b.copy(b, off, 0, Math.min(1 << 20, b.length - off)), b.writeUInt32BE(off ^ i, off);
  blobs.set(createHash('sha256').update(b).digest('hex'), b);
}
const origin = createServer((req, res) => {
  const m = /sha256:([0-9a-f]{64})/.exec(req.url ?? '');
  const b = m && blobs.get(m[1]);
  if (!b) return void res.writeHead(404).end();
  res.writeHead(200, { 'content-length': b.length });
  if (req.method === 'HEAD') return void res.end();
  res.end(b);
});
await new Promise((r) => origin.listen(0, '127.0.0.1', r));
const originPort = origin.address().port;
const digests = [...blobs.keys()];

// ---- supernode in its own process, with the flags bin/supernode uses
const nodeArgs = ['--max-semi-space-size=1', '--optimize-for-size', ...(process.env.SN_NODE_ARGS ?? '').split(' ').filter(Boolean)];
if (CPU_PROF) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${CPU_PROF}`);
const snArgs = [...nodeArgs, new URL(process.env.SN_SCRIPT ?? './sn.mjs', import.meta.url).pathname, dir];
const memcg = MEM_LIMIT_MB > 0 ? createMemCgroup(`dfts-scale-${NAME}`, MEM_LIMIT_MB, dir) : undefined;
const [snCmd, snArgv] = memcg ? memcg.command(snArgs) : [process.execPath, snArgs];
const sn = spawn(snCmd, snArgv, { env: { ...process.env, MALLOC_ARENA_MAX: '2' }, stdio: ['ignore', 'pipe', 'inherit'] });
let maxRss = 0;
let maxAnon = 0;
let snExit;
let finishing = false;
sn.once('exit', (code, signal) => {
  snExit = { code, signal };
  if (finishing) return;
  // Killed mid-run (the memory cgroup's OOM killer, say): report that instead of the
  // transport errors every simulated peer is about to see.
  const memcg0 = memcg?.report();
  memcg?.remove();
  rmSync(dir, { recursive: true, force: true });
  console.log(JSON.stringify({ run: NAME, peers: PEERS, tasks: TASKS, supernodeDied: snExit, memcg: memcg0, snRssMaxMB: +maxRss.toFixed(1), snAnonMaxMB: +maxAnon.toFixed(1) }));
  process.exit(1);
});
const info = await new Promise((res) => {
  let buf = '';
  sn.stdout.on('data', (d) => {
    buf += d;
    const i = buf.indexOf('\n');
    if (i >= 0) res(JSON.parse(buf.slice(0, i)));
  });
});
const SN = `127.0.0.1:${info.apiPort}`;
const agent = new Agent({ keepAlive: true, maxSockets: Infinity });

function call(method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body ? JSON.stringify(body) : undefined;
    const req = request({ host: '127.0.0.1', port: info.apiPort, method, path, agent, headers: data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {} }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const t = Buffer.concat(chunks).toString();
        try {
          resolve({ status: res.statusCode, json: JSON.parse(t) });
        } catch {
          resolve({ status: res.statusCode, text: t });
        }
      });
    });
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

// ---- supernode process sampling
const clk = 100;
function procStat() {
  const s = readFileSync(`/proc/${info.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const cpu = (Number(s[11]) + Number(s[12])) / clk;
  const st = readFileSync(`/proc/${info.pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+)/.exec(st)[1]) / 1024;
  const hwm = Number(/VmHWM:\s+(\d+)/.exec(st)[1]) / 1024;
  // Anonymous memory is what a memory cgroup cannot reclaim without swap; file pages (the
  // node binary's text) it can drop and read again.
  const anon = Number(/RssAnon:\s+(\d+)/.exec(st)[1]) / 1024;
  return { cpu, rss, hwm, anon };
}
let lagMax = 0;
let lagP99Max = 0;
const pings = [];
const slowPings = [];
const sampler = setInterval(() => {
  try {
    const p = procStat();
    maxRss = Math.max(maxRss, p.rss);
    maxAnon = Math.max(maxAnon, p.anon);
  } catch {}
}, 200);
const pinger = setInterval(() => {
  const t0 = performance.now();
  call('GET', '/_ping').then(() => { const d = performance.now() - t0; pings.push(d); if (d > 2000) slowPings.push([+((t0 - T0)/1000).toFixed(1), Math.round(d)]); }, () => {});
}, 100);
const pings2 = [];
const slowPings2 = [];
const { request: rq } = await import('node:http');
const pinger2 = setInterval(() => {
  const t0 = performance.now();
  const r = rq({ host: '127.0.0.1', port: info.apiPort, path: '/_ping', agent: false }, (res) => { res.resume(); res.on('end', () => { const d = performance.now() - t0; pings2.push(d); if (d > 2000) slowPings2.push([+((t0 - T0)/1000).toFixed(1), Math.round(d)]); }); });
  r.on('error', () => {}); r.end();
}, 100);
const scrape = async () => {
  const r = await call('GET', '/metrics');
  const t = r.text ?? '';
  const g = (n) => Number(new RegExp(`^${n} ([0-9.e+-]+)`, 'm').exec(t)?.[1] ?? NaN);
  lagMax = Math.max(lagMax, g('supernode_nodejs_eventloop_lag_max_seconds') || 0);
  lagP99Max = Math.max(lagP99Max, g('supernode_nodejs_eventloop_lag_p99_seconds') || 0);
  return t;
};
const scraper = setInterval(() => void scrape().catch(() => {}), 1000);

// ---- simulated peers
const stats = { polls: 0, lat: [], latImmediate: [], codes: {}, fromCdn: 0, fromPeer: 0, relayed: 0, failed: 0, busy: 0, maxUpload: 0, overUp: 0, reg: [], notRegistered: 0 };
const peersByCid = new Map();
const uploads = new Map(); // cid -> concurrent uploads (cdn cid included)
const srcServed = new Map(); // cid -> pieces served

class Peer {
  constructor(task, idx) {
    this.task = task;
    this.idx = idx;
    this.cid = `rvk-t${task.i}-p${idx}`;
    this.ip = SAME_IP ? '127.0.0.1' : `127.${1 + (idx >> 8)}.${idx & 255}.${10 + task.i}`;
    this.port = 20000 + ((task.i * 64 + idx) % 40000);
    this.held = new Set();
    this.waiters = new Map(); // piece -> resolvers (for relayed fetches)
    this.running = 0;
    this.outstanding = 0;
    this.limited = false;
    this.done = false;
    this.dead = false;
    this.bad = false;
    this.vanish = false;
    this.started = false;
    peersByCid.set(this.cid, this);
  }
  async register() {
    const url = `http://127.0.0.1:${originPort}/v2/rvk/blobs/sha256:${this.task.digest}`;
    const t0 = performance.now();
    const r = await call('POST', '/peer/registry', { rawUrl: url, taskUrl: url, cid: this.cid, ip: this.ip, port: this.port, path: `/peer/file/${this.cid}`, hostName: this.cid, version: '1.0.6', superNodeIp: '127.0.0.1', headers: [], dfdaemon: true, relay: !!RELAY, insecure: false, rootCAs: [] });
    stats.reg.push(performance.now() - t0);
    if (r.json?.code !== 200) throw new Error(`register ${this.cid}: ${r.status} ${JSON.stringify(r.json ?? r.text).slice(0, 200)}`);
    this.taskId = r.json.data.taskId;
    this.reg = r.json.data;
    this.t0 = performance.now();
  }
  ask(report) {
    if (this.done || this.dead) return;
    this.outstanding++;
    const q = new URLSearchParams({ taskId: this.taskId, srcCid: this.cid, status: String(this.started ? 701 : 700), wait: '5000' });
    this.started = true;
    if (report) {
      q.set('range', report.p.range);
      q.set('result', String(report.ok ? 501 : report.busy ? 502 : 500));
      q.set('dstCid', report.p.cid);
    }
    const t0 = performance.now();
    stats.polls++;
    call('GET', `/peer/task?${q}`).then((r) => {
      this.outstanding--;
      const ms = performance.now() - t0;
      stats.lat.push(ms);
      const a = r.json ?? {};
      const key = a.code === 601 ? (Array.isArray(a.data) ? 'pieces' : 'limited') : String(a.code);
      stats.codes[key] = (stats.codes[key] ?? 0) + 1;
      if (key !== '602') stats.latImmediate.push(ms);
      this.handle(a, ms);
    }, (e) => {
      this.outstanding--;
      stats.codes.err = (stats.codes.err ?? 0) + 1;
      if (!this.dead) setTimeout(() => this.ask(), 500);
    });
  }
  handle(a, ms) {
    if (this.dead) return;
    const pieces = a.code === 601 && Array.isArray(a.data) ? a.data : undefined;
    if (pieces) for (const p of pieces) this.start(p);
    else if (a.code === 601) this.limited = true;
    else if (a.code === 600) return this.finish();
    else if (a.code === 500 && a.error === 'PEER_NOT_REGISTERED') {
      stats.notRegistered++;
      return;
    } else if (a.code !== 602) {
      stats.codes['other:' + a.code + ':' + (a.msg ?? '')] = 1;
      return;
    }
    if (this.outstanding > 0) return;
    if (!this.limited) {
      const nothing = a.code === 602 || (pieces && pieces.length === 0);
      if (nothing && ms < 20) setTimeout(() => this.ask(), 100);
      else this.ask();
    } else if (this.running === 0) setTimeout(() => this.ask(), 1000);
  }
  async start(p) {
    this.running++;
    const fromCdn = p.cid.startsWith('cdnnode:');
    if (fromCdn) stats.fromCdn++;
    else stats.fromPeer++;
    const src = fromCdn ? undefined : peersByCid.get(p.cid);
    let ok = true;
    let busy = false;
    if (src && (src.dead || src.bad)) {
      ok = false;
      await sleep(src.dead ? 1 : PIECE_MS);
    } else {
      if (src && !src.held.has(p.pieceNum)) {
        stats.relayed++;
        await new Promise((r) => {
          const l = src.waiters.get(p.pieceNum) ?? [];
          l.push(r);
          src.waiters.set(p.pieceNum, l);
        });
        if (!src.held.has(p.pieceNum)) ok = false; // upstream failed: cut off
      }
      if (ok) {
        const u = (uploads.get(p.cid) ?? 0) + 1;
        uploads.set(p.cid, u);
        if (!fromCdn) {
          stats.maxUpload = Math.max(stats.maxUpload, u);
          if (u > 5) stats.overUp++;
        }
        await sleep(PIECE_MS * (fromCdn ? 1 : u));
        uploads.set(p.cid, uploads.get(p.cid) - 1);
        srcServed.set(p.cid, (srcServed.get(p.cid) ?? 0) + 1);
      }
    }
    this.running--;
    this.limited = false;
    if (this.dead) return;
    if (ok) {
      this.held.add(p.pieceNum);
      const w = this.waiters.get(p.pieceNum);
      this.waiters.delete(p.pieceNum);
      for (const r of w ?? []) r();
      if (this.vanish && this.held.size >= VANISH_AFTER) {
        this.dead = true; // no service/down, no more calls, port "closed"
        for (const l of this.waiters.values()) for (const r of l) r();
        this.waiters.clear();
        return;
      }
      if (this.held.size >= this.task.count) this.doneAt = performance.now() - this.t0;
    } else {
      stats.failed++;
      const w = this.waiters.get(p.pieceNum);
      this.waiters.delete(p.pieceNum);
      for (const r of w ?? []) r();
    }
    this.ask({ p, ok, busy });
  }
  finish() {
    this.done = true;
    this.doneAt ??= performance.now() - this.t0;
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const tasks = digests.map((digest, i) => ({ i, digest, peers: [], count: 0 }));
const cpu0 = procStat().cpu;
const T0 = performance.now();
// Register: the first peer of each task fills the CDN; the rest join as hosts do in a rollout.
for (const t of tasks) {
  for (let j = 0; j < PEERS; j++) t.peers.push(new Peer(t, j));
  const nBad = Math.round(PEERS * BAD);
  const nVan = Math.round(PEERS * VANISH);
  for (let j = 0; j < nBad; j++) t.peers[PEERS - 1 - j].bad = true;
  for (let j = 0; j < nVan; j++) t.peers[j * 2 + 1].vanish = true;
}
await Promise.all(tasks.map(async (t) => {
  await Promise.all(t.peers.map((p) => p.register()));
}));
const regDone = performance.now() - T0;
const cpuReg = procStat().cpu - cpu0;
for (const t of tasks) { const d = t.peers[0].reg; t.count = Math.max(1, Math.ceil(d.fileLength / (d.pieceSize - 5))); }
const cpuStart = procStat().cpu;
const selfCpu0 = process.cpuUsage();
const tStart = performance.now();
for (const t of tasks) for (const p of t.peers) p.ask();
const probes = [];
for (const at of (process.env.PROBE_AT ?? '').split(',').filter(Boolean).map(Number)) setTimeout(() => {
  const c = spawn(process.execPath, [new URL('./probe.mjs', import.meta.url).pathname, SN, `http://127.0.0.1:${originPort}/v2/rvk/blobs/sha256:${tasks[0].digest}`]);
  let o = ''; c.stdout.on('data', (d) => (o += d)); c.on('exit', () => probes.push(`@${at}s: ${o.trim()}`));
}, at * 1000);

const all = tasks.flatMap((t) => t.peers);
const alive = all.filter((p) => !p.vanish);
await new Promise((resolve) => {
  const iv = setInterval(() => {
    const left = alive.filter((p) => !p.done && !p.bad).length;
    if (left === 0 || performance.now() - tStart > LIMIT_S * 1000) {
      clearInterval(iv);
      resolve();
    }
  }, 100);
});
finishing = true;
const elapsed = (performance.now() - tStart) / 1000;
const cpuRun = procStat().cpu - cpuStart;
const metrics = await scrape();
clearInterval(sampler);
clearInterval(pinger); clearInterval(pinger2);
clearInterval(scraper);
const hwm = procStat().hwm;
const m = (n, l = '') => {
  let s = 0;
  for (const line of metrics.split('\n')) if (line.startsWith(n) && line.includes(l) && !line.startsWith('#')) s += Number(line.split(' ').pop());
  return s;
};
const pct = (a, q) => {
  if (!a.length) return NaN;
  const s = [...a].sort((x, y) => x - y);
  return +s[Math.min(s.length - 1, Math.floor(q * s.length))].toFixed(1);
};
const served = [...srcServed.entries()].filter(([k]) => !k.startsWith('cdnnode:')).map(([, v]) => v);
const cdnServed = [...srcServed.entries()].filter(([k]) => k.startsWith('cdnnode:')).reduce((a, [, v]) => a + v, 0);
const doneTimes = all.filter((p) => p.doneAt !== undefined && !p.bad).map((p) => p.doneAt / 1000);
const out = {
  run: NAME, peers: PEERS, tasks: TASKS, pieces: tasks[0].count, bad: BAD, vanish: VANISH, relay: RELAY,
  incomplete: alive.filter((p) => !p.done && !p.bad).length,
  registerS: +(regDone / 1000).toFixed(2), regP50: pct(stats.reg, 0.5), regMax: pct(stats.reg, 1),
  swarmS: +elapsed.toFixed(2), doneP50: pct(doneTimes, 0.5), doneMax: pct(doneTimes, 1),
  snCpuReg: +cpuReg.toFixed(2), snCpuRun: +cpuRun.toFixed(2), snCpuPct: +((100 * cpuRun) / elapsed).toFixed(0),
  snRssMaxMB: +maxRss.toFixed(1), snHwmMB: +hwm.toFixed(1), snAnonMaxMB: +maxAnon.toFixed(1), lagMaxMs: +(lagMax * 1000).toFixed(1), lagP99MaxMs: +(lagP99Max * 1000).toFixed(1),
  pingP50: pct(pings, 0.5), pingP99: pct(pings, 0.99), pingMax: pct(pings, 1),
  polls: stats.polls, pollP50: pct(stats.lat, 0.5), pollP99: pct(stats.lat, 0.99), immP50: pct(stats.latImmediate, 0.5), immP99: pct(stats.latImmediate, 0.99),
  codes: stats.codes, fromCdn: stats.fromCdn, fromPeer: stats.fromPeer, relayed: stats.relayed, failed: stats.failed,
  cdnServed, peerServedMax: Math.max(0, ...served), peerServedMean: +(served.reduce((a, b) => a + b, 0) / Math.max(1, all.length)).toFixed(1),
  maxUpload: stats.maxUpload, overUpLimitStarts: stats.overUp,
  genCpuS: +((process.cpuUsage(selfCpu0).user + process.cpuUsage(selfCpu0).system) / 1e6).toFixed(2), genLagMaxMs: +(selfLag.max / 1e6).toFixed(0), slowPings: slowPings.slice(0, 8), fresh: { p50: pct(pings2, 0.5), p99: pct(pings2, 0.99), max: pct(pings2, 1), slow: slowPings2.slice(0, 8) },
  probes,
  blacklist: m('supernode_blacklist_events_total'), eliminations: m('supernode_eliminations_total'), notRegistered: stats.notRegistered,
};
sn.kill('SIGTERM');
await new Promise((r) => (snExit ? r() : sn.once('exit', r)));
if (memcg) {
  out.memcg = { ...memcg.report(), supernodeExit: snExit };
  memcg.remove();
}
console.log(JSON.stringify(out));
const row = (k, v) => console.log(`| ${k} | ${v} |`);
console.log('| metric | value |\n|---|---|');
row('peers x tasks', `${PEERS} x ${TASKS}`);
row('all pieces everywhere, s', out.swarmS);
row('supernode CPU-s (share of a core)', `${out.snCpuRun} (${out.snCpuPct}%)`);
row('supernode peak RSS, MB', out.snHwmMB);
row('/_ping p50 / max ms, kept-alive', `${out.pingP50} / ${out.pingMax}`);
row('/_ping p50 / max ms, new connection', `${out.fresh.p50} / ${out.fresh.max}`);
row('supernode peak anonymous RSS, MB', out.snAnonMaxMB);
if (out.memcg) row(`in a ${MEM_LIMIT_MB} MB memory cgroup: peak charge MB / limit hits / OOM kills`, `${out.memcg.peakMB} / ${out.memcg.limitHits} / ${out.memcg.oomKills}`);
agent.destroy();
origin.close();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
