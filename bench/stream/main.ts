// `npm run bench:stream`: a 1 GiB blob from Debian's docker-registry on loopback, downloaded
// directly and streamed through ./bin/dfdaemon processes in the same run, plus dfdaemon's peak
// RSS while it streams the blob and uploads it to four other dfdaemons.
//   BLOB_MB (default 1024), RUNS (default 3) change the size and the repetitions.
import { cpus, loadavg } from 'node:os';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, tmpDir } from '../../test/fixtures/proc.js';
import { startRegistry } from '../../test/fixtures/registry.js';
import { metric } from '../../test/helpers/cluster.js';
import { Cleanups, loopbackIp, REPO_ROOT, scrape, startBin, type Daemon } from '../../test/helpers/e2e.js';
import { pushBenchBlob, writeBlob } from './blob.js';
import { connectedPids, cpuDuring, median, memoryOf, timedGet, type Transfer } from './measure.js';
import { report } from './report.js';

const MiB = 1024 * 1024;
const SIZE = Number(process.env.BLOB_MB ?? 1024) * MiB;
const RUNS = Number(process.env.RUNS ?? 3);
const PEERS = 4;

/** Per process, the median CPU seconds over the runs, and their sum. */
function cpuMedians(runs: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(runs[0])) out[k] = +median(runs.map((r) => r[k])).toFixed(2);
  out.total = +median(runs.map((r) => Object.values(r).reduce((a, b) => a + b, 0))).toFixed(2);
  return out;
}

async function main(): Promise<void> {
  const loadAtStart = +loadavg()[0].toFixed(2);
  const cleanups = new Cleanups();
  try {
    const t = await tmpDir('bench-stream');
    cleanups.push(() => t.cleanup());
    const reg = await startRegistry({ host: await loopbackIp(), logLevel: 'warn' });
    cleanups.push(() => reg.stop());
    const blob = await writeBlob(join(t.path, 'blob'), SIZE, `bench-${Date.now()}`);
    await pushBenchBlob(reg.url, 'bench/stream', blob);
    await rm(blob.path);
    const url = `${reg.url}/v2/bench/stream/blobs/${blob.digest}`;

    const snIp = await loopbackIp();
    const snPort = await freePort(snIp);
    await writeFile(join(t.path, 'supernode.yml'), `base:\n  homeDir: ${join(t.path, 'sn')}\n  maxBandwidth: 1000G\n  systemReservedBandwidth: 1M\n`);
    const sn = await startBin('supernode', ['--config', join(t.path, 'supernode.yml'), '--port', String(snPort), '--download-port=0', '--listen-ip', snIp], snIp, snPort);
    cleanups.push(() => sn.stop());

    let n = 0;
    const startDf = async (): Promise<Daemon> => {
      const home = join(t.path, `df${n++}`);
      await mkdir(home);
      const cfg = join(home, 'dfdaemon.yml');
      // Rates far above loopback speed: the benchmark measures the data path, not the limits.
      await writeFile(cfg, `dfget_flags: ["--node", "${snIp}:${snPort}"]\nproxies:\n  - regx: blobs/sha256.*\nratelimit: 100G\n`);
      const ip = await loopbackIp();
      const port = await freePort(ip);
      const d = await startBin('dfdaemon', ['--config', cfg, '--port', String(port), '--listen-ip', ip], ip, port, { HOME: home, DF_LOG_LEVEL: 'warn' });
      cleanups.push(() => d.stop());
      return d;
    };
    const through = (d: Daemon, onBytes?: (n: number) => void) => timedGet(url, { host: d.host, port: d.port }, onBytes);
    const check = (x: Transfer, what: string) => {
      if (x.status !== 200 || x.bytes !== SIZE) throw new Error(`${what}: HTTP ${x.status}, ${x.bytes} of ${SIZE} bytes`);
      return x;
    };

    // Warm the supernode's CDN (and the page cache) once; none of this is measured.
    const warm = await startDf();
    check(await through(warm), 'warm-up');
    await warm.stop();
    check(await timedGet(url), 'warm-up direct');

    const direct: Transfer[] = [];
    const p2p: Transfer[] = [];
    const local: Transfer[] = [];
    // CPU seconds per path, every process on it: on two cores, the sum over 2 bounds the time.
    const cpu: Record<'direct' | 'cdnWarm' | 'local', Record<string, number>[]> = { direct: [], cdnWarm: [], local: [] };
    for (let i = 0; i < RUNS; i++) {
      const dr = await cpuDuring({ registry: reg.proc.pid }, () => timedGet(url));
      direct.push(check(dr.value, 'direct'));
      cpu.direct.push(dr.cpu);
      const d = await startDf();
      const pids = { registry: reg.proc.pid, supernode: sn.proc.pid, dfdaemon: d.proc.pid };
      const pr = await cpuDuring(pids, () => through(d));
      p2p.push(check(pr.value, 'dfdaemon, CDN warm'));
      cpu.cdnWarm.push(pr.cpu);
      const lr = await cpuDuring(pids, () => through(d));
      local.push(check(lr.value, 'dfdaemon, local cache'));
      cpu.local.push(lr.cpu);
      await d.stop();
    }

    // Peak RSS of one dfdaemon that streams the blob while four others fetch it from it.
    const a = await startDf();
    const peers = await Promise.all(Array.from({ length: PEERS }, () => startDf()));
    let sampledMax = 0;
    // Which of the four peers fetched pieces from A: their processes connected to A's port.
    const servedPeers = new Set<number>();
    const peerPids = new Set(peers.map((p) => p.proc.pid));
    const sampler = setInterval(() => {
      sampledMax = Math.max(sampledMax, memoryOf(a.proc.pid).rssMB);
      for (const pid of connectedPids(a.host, a.port)) if (peerPids.has(pid)) servedPeers.add(pid);
    }, 50);
    // Let A get half-way first, so it holds many pieces the others lack and the supernode
    // sends them to A for those while A streams the rest.
    let ahead: () => void = () => undefined;
    const half = new Promise<void>((r) => (ahead = r));
    const own = through(a, (n) => n >= SIZE / 2 && ahead());
    await Promise.race([half, own]);
    const others = await Promise.all(peers.map((p) => through(p)));
    check(await own, 'dfdaemon under upload load');
    others.forEach((o, i) => check(o, `peer ${i}`));
    clearInterval(sampler);
    const mem = memoryOf(a.proc.pid);
    const aText = await scrape(a.url);
    const peerBytes = await Promise.all(peers.map(async (p) => metric(await scrape(p.url), 'dfdaemon_piece_bytes_total', { source: 'peer' })));

    const directRate = median(direct.map((x) => x.rate));
    const p2pRate = median(p2p.map((x) => x.rate));
    const result = {
      bench: 'stream',
      blobBytes: SIZE,
      runs: RUNS,
      cpus: cpus().length,
      direct: { MBps: +(directRate / 1e6).toFixed(1), ttfbMs: +median(direct.map((x) => x.ttfbMs)).toFixed(1) },
      dfdaemonCdnWarm: { MBps: +(p2pRate / 1e6).toFixed(1), ttfbMs: +median(p2p.map((x) => x.ttfbMs)).toFixed(1) },
      dfdaemonLocal: { MBps: +(median(local.map((x) => x.rate)) / 1e6).toFixed(1), ttfbMs: +median(local.map((x) => x.ttfbMs)).toFixed(1) },
      ratio: +(p2pRate / directRate).toFixed(3),
      cpuSec: {
        direct: cpuMedians(cpu.direct),
        cdnWarm: cpuMedians(cpu.cdnWarm),
        local: cpuMedians(cpu.local),
      },
      ratioLocal: +(median(local.map((x) => x.rate)) / directRate).toFixed(3),
      loadavg: [loadAtStart, +loadavg()[0].toFixed(2)],
      rss: {
        peakMB: +mem.hwmMB.toFixed(1),
        sampledMaxMB: +sampledMax.toFixed(1),
        uploadedMB: +(metric(aText, 'dfdaemon_upload_bytes_total') / 1e6).toFixed(1),
        peersServed: servedPeers.size,
        peersFromPeersMB: peerBytes.map((b) => +(b / 1e6).toFixed(1)),
      },
      samples: {
        directMBps: direct.map((x) => +(x.rate / 1e6).toFixed(1)),
        dfdaemonCdnWarmMBps: p2p.map((x) => +(x.rate / 1e6).toFixed(1)),
        dfdaemonLocalMBps: local.map((x) => +(x.rate / 1e6).toFixed(1)),
      },
    };
    const md = report(result);
    process.stdout.write(`${JSON.stringify(result)}\n\n${md.table}\n`);
    await mkdir(join(REPO_ROOT, 'bench', 'results'), { recursive: true });
    await writeFile(join(REPO_ROOT, 'bench', 'results', 'stream.md'), md.full);
  } finally {
    await cleanups.run();
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench:stream failed: ${err.stack}\n`);
  process.exit(1);
});
