// One run: one mode, one image, N client hosts, from a clean state to a verified result.
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { verifyCopiedDir, verifyOciLayout } from '../../test/fixtures/skopeo.js';
import { startPull, type Pull } from './client.js';
import { allCounters, client, ORIGIN, SUPER, type Host } from './net.js';
import { CpuSampler, waitQuiet, type CpuSummary } from './sampler.js';
import {
  DFDAEMON_PORT, procStats, registryBlobBytes, REGISTRY_PORT, SN_PORT, startDfdaemon, startRegistry, startSupernode,
  type DaemonOpts, type ProcStats, type Service,
} from './services.js';
import { analyseTraces, type TraceSummary } from './traces.js';

export type Mode = 'direct' | 'proxy' | 'p2p';

export interface ImageInfo {
  name: string;
  repo: string;
  tag: string;
  /** Every blob plus the manifest: what one pull moves. */
  bytes: number;
}

export interface RunSpec {
  image: ImageInfo;
  n: number;
  mode: Mode;
  rateBps: number;
  /** Image size over the slowest link it must cross. */
  tStar: number;
  timeoutMs: number;
  /** Scratch space for this run; removed afterwards. */
  dir: string;
  daemon: Omit<DaemonOpts, 'dir'>;
  originLog: string;
  /** Our namespaces' inodes, to tell our CPU use from other sessions'. */
  ours: Set<number>;
  /** How long to wait for other sessions' CPU use to calm down before starting. */
  quietWaitMs: number;
  /** Copy logs and traces here before the run's scratch space is removed. */
  keepDir?: string;
  /** skopeo's destination: dir: (one blob at a time) or oci: (concurrent layers). */
  dest: 'dir' | 'oci';
  /** P2P only: pulled by every host through its daemons before the measured pull. */
  warmUp?: ImageInfo;
}

export interface RunResult {
  image: string;
  imageBytes: number;
  n: number;
  mode: Mode;
  rateMbit: number;
  tStar: number;
  /** Epoch ms of the start, to line the run up with its kept traces and logs. */
  t0Epoch: number;
  wall: number | null;
  wallOverTStar: number | null;
  hostP50: number | null;
  hostP99: number | null;
  hostTimes: number[];
  originEgressBytes: number;
  egressCopies: number;
  registryBlobCopies: number;
  supernodeHostEgressBytes: number;
  verified: boolean;
  cpu: CpuSummary;
  /** Other sessions' CPU use (cores) just before the start. */
  foreignBefore: number;
  procs: ProcStats[];
  maxRssMB: number | null;
  metrics?: Record<string, number>;
  trace?: TraceSummary;
  errors: string[];
}

/** Logs, traces and configs only: pulled images and piece stores are too big to keep. */
async function keepSmallFiles(from: string, to: string): Promise<void> {
  for (const e of await readdir(from, { withFileTypes: true })) {
    const src = join(from, e.name);
    if (e.isDirectory() && !['image', 'data', 'work', 'home'].includes(e.name)) await keepSmallFiles(src, join(to, e.name));
    else if (e.isFile() && /\.(log|jsonl|yml)$/.test(e.name)) {
      await mkdir(to, { recursive: true });
      await copyFile(src, join(to, e.name));
    }
  }
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

async function scrape(host: Host, port: number): Promise<string> {
  const res = await fetch(`http://${host.ip}:${port}/metrics`, { signal: AbortSignal.timeout(10_000) });
  return res.text();
}

/** Sum of a Prometheus counter over the label sets that match. */
export function metricSum(text: string, name: string, label?: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (m && m[1] === name && (label === undefined || (m[2] ?? '').includes(label))) sum += Number(m[3]);
  }
  return sum;
}

async function p2pMetrics(sn: Service, daemons: Service[]): Promise<Record<string, number>> {
  const s = await scrape(sn.host, SN_PORT);
  const d = await Promise.all(daemons.map((x) => scrape(x.host, DFDAEMON_PORT)));
  const sum = (name: string, label?: string) => d.reduce((a, t) => a + metricSum(t, name, label), 0);
  return {
    snSourceBytes: metricSum(s, 'supernode_source_bytes_total'),
    snServedBytes: metricSum(s, 'supernode_served_bytes_total'),
    snPiecesFromCdn: metricSum(s, 'supernode_pieces_scheduled_total', 'source="cdn"'),
    snPiecesFromPeer: metricSum(s, 'supernode_pieces_scheduled_total', 'source="peer"'),
    snPieceFailures: metricSum(s, 'supernode_piece_failures_total'),
    pieceBytesFromSupernode: sum('dfdaemon_piece_bytes_total', 'source="supernode"'),
    pieceBytesFromPeers: sum('dfdaemon_piece_bytes_total', 'source="peer"'),
    backSourceBytes: sum('dfdaemon_source_bytes_total'),
    uploadBytes: sum('dfdaemon_upload_bytes_total'),
    pieceFailures: sum('dfdaemon_piece_failures_total'),
    blobsViaP2p: sum('dfdaemon_blobs_total', 'via="p2p"'),
    blobsViaSource: sum('dfdaemon_blobs_total', 'via="source"'),
    blobFailures: sum('dfdaemon_blob_failures_total'),
  };
}

export async function runOnce(spec: RunSpec): Promise<RunResult> {
  const { image, n, mode } = spec;
  const tStar = spec.tStar;
  const clients = Array.from({ length: n }, (_, i) => client(i + 1));
  const errors: string[] = [];
  const services: Service[] = [];
  const project: Service[] = [];
  const pulls: Pull[] = [];
  const times: (number | null)[] = new Array<number | null>(n).fill(null);
  let cpu: CpuSummary = { mean: 0, saturated: 0, foreign: 0, bySec: {} };
  let foreignBefore = 0;
  const procs: ProcStats[] = [];
  let metrics: Record<string, number> | undefined;
  let trace: TraceSummary | undefined;
  let verified = false;
  let origin = 0;
  let snEgress = 0;
  let regBytes = 0;
  let t0Epoch = 0;
  await mkdir(spec.dir, { recursive: true });
  try {
    if (mode === 'proxy') services.push(await startRegistry(SUPER, join(spec.dir, 'pull-through'), `http://${ORIGIN.ip}:${REGISTRY_PORT}`));
    if (mode === 'p2p') {
      const sn = await startSupernode(SUPER, { ...spec.daemon, dir: join(spec.dir, 'supernode') });
      project.push(sn);
      const ds = await Promise.all(clients.map((h) => startDfdaemon(h, SUPER, { ...spec.daemon, dir: join(spec.dir, h.ns, 'dfdaemon') })));
      project.push(...ds);
      if (spec.warmUp) {
        const ref = `${ORIGIN.ip}:${REGISTRY_PORT}/${spec.warmUp.repo}:${spec.warmUp.tag}`;
        const warm = await Promise.all(clients.map((h) => startPull(h, ref, join(spec.dir, h.ns, 'warm-up'), performance.now(), `http://${h.ip}:${DFDAEMON_PORT}`, spec.dest)));
        for (const w of warm) {
          const d = await w.done;
          if (!d.ok) throw new Error(`warm-up pull on ${w.host.ns}: ${d.error}`);
        }
      }
    }
    const regHost = mode === 'proxy' ? SUPER : ORIGIN;
    const ref = `${regHost.ip}:${REGISTRY_PORT}/${image.repo}:${image.tag}`;
    const watched = [ORIGIN, SUPER, ...clients];
    const before = await allCounters(watched);
    const reg0 = registryBlobBytes(spec.originLog);
    foreignBefore = await waitQuiet(spec.ours, spec.quietWaitMs);
    const sampler = new CpuSampler(spec.ours);
    const t0 = performance.now();
    t0Epoch = performance.timeOrigin + t0;
    pulls.push(
      ...(await Promise.all(
        clients.map((h) => startPull(h, ref, join(spec.dir, h.ns), t0, mode === 'p2p' ? `http://${h.ip}:${DFDAEMON_PORT}` : undefined, spec.dest)),
      )),
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), spec.timeoutMs)));
    const all = Promise.all(
      pulls.map((p, i) =>
        p.done.then((d) => {
          if (d.ok) times[i] = d.ms / 1000;
          else errors.push(`${p.host.ns}: ${d.error}`);
        }),
      ),
    );
    if ((await Promise.race([all, timeout])) === 'timeout') {
      errors.push(`timed out after ${spec.timeoutMs / 1000} s`);
      await Promise.all(pulls.map((p) => p.proc.stop()));
    }
    clearTimeout(timer);
    cpu = sampler.stop();
    const after = await allCounters(watched);
    origin = after.get(ORIGIN.ns)!.tx - before.get(ORIGIN.ns)!.tx;
    snEgress = after.get(SUPER.ns)!.tx - before.get(SUPER.ns)!.tx;
    regBytes = registryBlobBytes(spec.originLog) - reg0;
    if (mode === 'p2p') metrics = await p2pMetrics(project[0], project.slice(1)).catch((e: Error) => (errors.push(`metrics: ${e.message}`), undefined));
    for (const s of project) procs.push(procStats(s.name, s.proc.pid, s.startedAt));
    const checks = await Promise.all(pulls.map((p) => (spec.dest === 'oci' ? verifyOciLayout(p.dest) : verifyCopiedDir(p.dest)).catch(() => ({ ok: false }))));
    checks.forEach((c, i) => c.ok || errors.push(`${pulls[i].host.ns}: pulled blobs do not verify`));
    verified = checks.length === n && checks.every((c) => c.ok);
  } catch (err) {
    errors.push((err as Error).message);
  } finally {
    await Promise.all(pulls.map((p) => p.proc.stop()));
    await Promise.all([...project, ...services].map((s) => s.proc.stop()));
    if (mode === 'p2p' && project.length > 0 && t0Epoch > 0) {
      trace = await analyseTraces(project, t0Epoch, spec.rateBps).catch((e: Error) => (errors.push(`trace: ${e.message}`), undefined));
    }
    if (spec.keepDir) await keepSmallFiles(spec.dir, spec.keepDir).catch((e: Error) => errors.push(`keep: ${e.message}`));
    await rm(spec.dir, { recursive: true, force: true, maxRetries: 3 });
  }
  const ok = times.filter((t): t is number => t !== null).sort((a, b) => a - b);
  const wall = ok.length === n && errors.length === 0 ? ok[ok.length - 1] : null;
  const rss = procs.map((p) => p.peakRssMB);
  return {
    image: image.name,
    imageBytes: image.bytes,
    n,
    mode,
    rateMbit: spec.rateBps / 1e6,
    tStar,
    t0Epoch: Math.round(t0Epoch),
    wall,
    wallOverTStar: wall === null ? null : wall / tStar,
    hostP50: ok.length ? pct(ok, 50) : null,
    hostP99: ok.length ? pct(ok, 99) : null,
    hostTimes: times.map((t) => (t === null ? -1 : +t.toFixed(3))),
    originEgressBytes: origin,
    egressCopies: origin / image.bytes,
    registryBlobCopies: regBytes / image.bytes,
    supernodeHostEgressBytes: snEgress,
    verified,
    cpu,
    foreignBefore: +foreignBefore.toFixed(2),
    procs,
    maxRssMB: rss.length ? Math.max(...rss) : null,
    metrics,
    trace,
    errors,
  };
}
