// Turns the daemons' trace files (see trace.ts) into the numbers that say where a P2P run's
// time went: when the CDN had the blob, how fast pieces moved and from where, how long peers
// sat with nothing in flight, how slow /peer/task was, and whether any event loop was busy.
import { readFile } from 'node:fs/promises';
import type { Service } from './services.js';

interface Out { k: 'out'; m?: string; p?: string; range?: string; t0: number; th?: number; t1: number; st?: number; bytes?: number; marks?: number[]; err?: string }
interface In { k: 'in'; m?: string; p?: string; range?: string; t0: number; t1: number; st?: number; len: number; ra?: string }
interface Sec { k: 'sec'; t: number; elu: number; cpuMs: number; lagP99: number; lagMax: number; rssMB: number }
type Rec = Out | In | Sec;

export interface Dist { n: number; p50: number; p99: number; max: number; mean: number }

function dist(xs: number[]): Dist {
  if (xs.length === 0) return { n: 0, p50: 0, p99: 0, max: 0, mean: 0 };
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
  const r = (x: number) => +x.toFixed(1);
  return { n: s.length, p50: r(at(0.5)), p99: r(at(0.99)), max: r(s[s.length - 1]), mean: r(s.reduce((a, b) => a + b, 0) / s.length) };
}

function rangeBytes(range: string | undefined): number {
  const m = /(\d+)-(\d+)/.exec(range ?? '');
  return m ? Number(m[2]) - Number(m[1]) + 1 : 0;
}

// A peer's path names the task and then its own token (`<taskId>-<hex>`), the CDN's carries a
// `?token=`: the task is the 64 hex digits either way.
const taskOf = (p: string) => /\/(?:peer\/file|download\/[0-9a-f]{3})\/([0-9a-f]{64})/.exec(p)?.[1] ?? '';

async function load(file: string): Promise<Rec[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Rec);
}

function maxConcurrent(iv: { t0: number; t1: number }[]): number {
  const edges = iv.flatMap((r) => [[r.t0, 1], [r.t1, -1]] as [number, number][]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let cur = 0;
  let max = 0;
  for (const [, d] of edges) max = Math.max(max, (cur += d));
  return max;
}

function loadStats(recs: Rec[]) {
  const secs = recs.filter((r): r is Sec => r.k === 'sec');
  return {
    eluMean: +(secs.reduce((a, s) => a + s.elu, 0) / Math.max(1, secs.length)).toFixed(2),
    eluMax: Math.max(0, ...secs.map((s) => s.elu)),
    lagP99Max: Math.max(0, ...secs.map((s) => s.lagP99)),
    lagMax: Math.max(0, ...secs.map((s) => s.lagMax)),
  };
}

/** Seconds within [from, to] during which none of the intervals is open. */
function idleWithin(iv: [number, number][], from: number, to: number): number {
  const s = [...iv].sort((a, b) => a[0] - b[0]);
  let idle = 0;
  let cursor = from;
  for (const [a, b] of s) {
    if (a > cursor) idle += Math.min(a, to) - cursor;
    cursor = Math.max(cursor, b);
    if (cursor >= to) break;
  }
  if (cursor < to) idle += to - cursor;
  return Math.max(0, idle);
}

export interface PeerTrace {
  name: string;
  /** Pieces of the largest blob, by where they came from (durations in ms). */
  fromCdn: Dist;
  fromPeers: Dist;
  failed: number;
  /** /peer/task round trips as the peer saw them (ms), split by whether they long-polled. */
  taskImmediate: Dist;
  taskLongPoll: Dist;
  registerMs: number;
  /** Run-relative seconds for the largest blob. */
  registeredAt: number;
  firstPieceAt: number;
  lastPieceAt: number;
  streamEndAt: number;
  /** Seconds between registration and the last piece with no piece in flight. */
  idle: number;
  /** Most pieces of the largest blob this peer had in flight at once. */
  maxInFlight: number;
  /** Largest blob's bytes over (last piece - registration) against the link rate. */
  linkUse: number;
  uploadedPieces: number;
  eluMean: number;
  eluMax: number;
  lagP99Max: number;
}

export interface TraceSummary {
  origin: { startAt: number; headersAt: number; endAt: number; mbit: number; bytes: number }[];
  cdnServed: Dist;
  cdnMaxConcurrent: number;
  snTask: Dist;
  snEluMean: number;
  snEluMax: number;
  snLagP99Max: number;
  peers: PeerTrace[];
}

export async function analyseTraces(services: Service[], t0: number, rateBps: number): Promise<TraceSummary> {
  const rel = (t: number) => +((t - t0) / 1000).toFixed(3);
  const [sn, ...daemons] = services;
  const s = await load(sn.traceFile!);
  const origin = s
    .filter((r): r is Out => r.k === 'out' && /\/blobs\//.test(r.p ?? ''))
    .map((r) => ({
      startAt: rel(r.t0),
      headersAt: rel(r.th ?? r.t1),
      endAt: rel(r.t1),
      bytes: r.bytes ?? 0,
      mbit: +(((r.bytes ?? 0) * 8) / ((r.t1 - (r.th ?? r.t0)) / 1000) / 1e6).toFixed(1),
    }));
  const served = s.filter((r): r is In => r.k === 'in' && (r.p ?? '').startsWith('/download/'));
  const maxConc = maxConcurrent(served);
  const snTasks = s.filter((r): r is In => r.k === 'in' && (r.p ?? '').startsWith('/peer/task'));
  const snLoad = loadStats(s);

  // Every piece as its server saw it, by requester address: the fallback for piece clients that
  // node's diagnostics channels cannot see (newer dfdaemons speak HTTP on raw sockets).
  const byDaemon = await Promise.all(daemons.map((d) => load(d.traceFile!)));
  const anyServed: (Out & { dst: string })[] = [];
  for (const recs of [s, ...byDaemon]) {
    for (const r of recs) {
      if (r.k === 'in' && /^\/(peer\/file|download)\//.test(r.p ?? '')) anyServed.push({ k: 'out', p: r.p, range: r.range, t0: r.t0, t1: r.t1, st: r.st, dst: (r.ra ?? '').replace(/^::ffff:/, '') });
    }
  }
  const peers: PeerTrace[] = [];
  for (const [i, d] of daemons.entries()) {
    const recs = byDaemon[i];
    const outs = recs.filter((r): r is Out => r.k === 'out');
    const own = outs.filter((r) => /^\/(peer\/file|download)\//.test(r.p ?? ''));
    const pieces: Out[] = own.length > 0 ? own : anyServed.filter((r) => r.dst === d.host.ip);
    const byTask = new Map<string, Out[]>();
    for (const p of pieces) byTask.set(taskOf(p.p!), [...(byTask.get(taskOf(p.p!)) ?? []), p]);
    const big = [...byTask.values()].sort((a, b) => b.length - a.length)[0] ?? [];
    const ok = big.filter((p) => !p.err && (p.st ?? 0) < 300);
    const cdn = ok.filter((p) => p.p!.startsWith('/download/'));
    const peer = ok.filter((p) => p.p!.startsWith('/peer/file/'));
    const tasks = outs.filter((r) => (r.p ?? '').startsWith('/peer/task'));
    const regs = outs.filter((r) => (r.p ?? '').startsWith('/peer/registry')).sort((a, b) => a.t0 - b.t0);
    // The registration that precedes the biggest blob's first piece is the one that started it.
    const firstStart = Math.min(...big.map((p) => p.t0));
    const reg = regs.filter((r) => r.t1 <= firstStart + 1).pop() ?? regs[0];
    const lastEnd = Math.max(...ok.map((p) => p.t1));
    const bytes = ok.reduce((a, p) => a + rangeBytes(p.range), 0);
    const streams = recs.filter((r): r is In => r.k === 'in' && /^http:.*\/blobs\//.test(r.p ?? '')).sort((a, b) => b.len - a.len);
    const from = reg ? reg.t1 : firstStart;
    const ls = loadStats(recs);
    peers.push({
      name: d.name,
      fromCdn: dist(cdn.map((p) => p.t1 - p.t0)),
      fromPeers: dist(peer.map((p) => p.t1 - p.t0)),
      failed: big.length - ok.length,
      taskImmediate: dist(tasks.filter((t) => !/[?&]wait=/.test(t.p!)).map((t) => t.t1 - t.t0)),
      taskLongPoll: dist(tasks.filter((t) => /[?&]wait=/.test(t.p!)).map((t) => t.t1 - t.t0)),
      registerMs: reg ? Math.round(reg.t1 - reg.t0) : -1,
      registeredAt: reg ? rel(reg.t1) : -1,
      firstPieceAt: ok.length ? rel(Math.min(...ok.map((p) => p.t1))) : -1,
      lastPieceAt: ok.length ? rel(lastEnd) : -1,
      streamEndAt: streams.length ? rel(streams[0].t1) : -1,
      maxInFlight: maxConcurrent(big),
      idle: ok.length ? +(idleWithin(big.map((p) => [p.t0, p.t1]), from, lastEnd) / 1000).toFixed(2) : -1,
      linkUse: ok.length ? +((bytes * 8) / ((lastEnd - from) / 1000) / rateBps).toFixed(2) : 0,
      uploadedPieces: recs.filter((r) => r.k === 'in' && (r.p ?? '').startsWith('/peer/file/')).length,
      eluMean: ls.eluMean,
      eluMax: ls.eluMax,
      lagP99Max: ls.lagP99Max,
    });
  }
  return {
    origin,
    cdnServed: dist(served.map((r) => r.t1 - r.t0)),
    cdnMaxConcurrent: maxConc,
    snTask: dist(snTasks.map((r) => r.t1 - r.t0)),
    snEluMean: snLoad.eluMean,
    snEluMax: snLoad.eluMax,
    snLagP99Max: snLoad.lagP99Max,
    peers,
  };
}
