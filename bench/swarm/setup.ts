// Things done once per benchmark: freeze the code under test, push the images, and prove the
// links are really shaped before any number is trusted.
import { cp, mkdir, symlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { buildImage, pushImage } from '../../test/fixtures/image.js';
import { run, runOk, sleep, spawnTracked } from '../../test/fixtures/proc.js';
import { client, inNs, ORIGIN, type Host } from './net.js';
import type { ImageInfo } from './run.js';
import { REGISTRY_PORT } from './services.js';

const MiB = 1024 * 1024;

/**
 * Other engineers rebuild dist/ while the matrix runs for an hour; a copy of the build keeps
 * every run on the same code. bin/ is copied too, so the daemons still start as ./bin/supernode.
 */
export async function snapshotBuild(repo: string, into: string): Promise<string> {
  for (const d of ['dist/supernode', 'dist/dfdaemon', 'dist/shared', 'dist/bench/swarm', 'bin']) {
    await mkdir(join(into, d), { recursive: true });
    await cp(join(repo, d), join(into, d), { recursive: true });
  }
  await cp(join(repo, 'package.json'), join(into, 'package.json'));
  await symlink(join(repo, 'node_modules'), join(into, 'node_modules'));
  return into;
}

/**
 * `--code <rev>`: the daemons as committed at a git revision, built apart from the working
 * tree, for when the tree is mid-edit (or to compare two revisions on the same network).
 */
export async function buildRevision(repo: string, rev: string, into: string, patches: readonly string[] = []): Promise<string> {
  if (!/^[\w./~^-]+$/.test(rev)) throw new Error(`--code: bad revision ${rev}`);
  await mkdir(into, { recursive: true });
  const paths = 'supernode dfdaemon shared bin package.json tsconfig.json';
  await runOk('bash', ['-c', `set -o pipefail; git -C "$0" archive "$1" ${paths} | tar -x -C "$2"`, repo, rev, into]);
  for (const p of patches) await runOk('patch', ['-p1', '-d', into, '-i', resolve(repo, p)]);
  await symlink(join(repo, 'node_modules'), join(into, 'node_modules'));
  await runOk(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', join(into, 'tsconfig.json')], { timeoutMs: 300_000 });
  await cp(join(repo, 'dist/bench/swarm'), join(into, 'dist/bench/swarm'), { recursive: true });
  return into;
}

/** The revision plus whether the daemons' sources differ from it, so a result names the code it measured. */
export async function codeState(repo: string, rev: string | undefined, patches: readonly string[] = []): Promise<string> {
  const head = (await runOk('git', ['-C', repo, 'rev-parse', '--short', rev ?? 'HEAD'])).trim();
  const with_ = patches.length ? ` with ${patches.join(', ')}` : '';
  if (rev !== undefined) return `${head}${with_} (built from git, working tree ignored)`;
  const dirty = (await runOk('git', ['-C', repo, 'status', '--porcelain', '--', 'supernode', 'dfdaemon', 'shared'])).trim();
  return dirty ? `working tree: ${head} + uncommitted changes in ${dirty.split('\n').length} daemon source files` : head;
}

export const IMAGES = {
  small: { layers: [64 * MiB, 2 * MiB, 2 * MiB, 2 * MiB] },
  large: { layers: [512 * MiB] },
  /** Pulled before a run by --warm-up: other blobs, so the measured image stays cold. */
  warmup: { layers: [8 * MiB, 1 * MiB] },
} as const;

/** Build and push from the root namespace, before shaping, so setup costs no benchmark time. */
export async function pushImages(names: readonly (keyof typeof IMAGES)[], seed: string): Promise<ImageInfo[]> {
  const out: ImageInfo[] = [];
  for (const name of names) {
    const img = await buildImage({ layers: [...IMAGES[name].layers], seed: `${seed}-${name}` });
    try {
      const repo = `bench/${name}`;
      await pushImage(`http://${ORIGIN.ip}:${REGISTRY_PORT}`, repo, 'v1', img);
      const bytes = img.layers.reduce((a, l) => a + l.size, 0) + img.config.size + img.manifest.size;
      out.push({ name, repo, tag: 'v1', bytes });
    } finally {
      await img.cleanup();
    }
  }
  return out;
}

interface Recv { bytes: number; first: number; last: number }

/** Receivers on `to`, one sender per `from` entry, `mib` MiB each; aggregate Mbit/s of payload. */
async function transfer(iperf: string, from: Host[], to: Host[], mib: number): Promise<number> {
  const port = 5201;
  const recvs = await Promise.all(
    to.map(async (h) => {
      const conns = from.length === 1 ? 1 : from.length / to.length;
      const [c, a] = inNs(h.ns, process.execPath, [iperf, 'recv', h.ip, String(port), String(conns)]);
      const p = await spawnTracked(c, a, { name: `iperf-${h.ns}`, stopTimeoutMs: 1_000 });
      return p;
    }),
  );
  try {
    await sleep(500);
    const sends = from.flatMap((h, i) => {
      const dst = to.length === 1 ? to[0] : to[i % to.length];
      const [c, a] = inNs(h.ns, process.execPath, [iperf, 'send', dst.ip, String(port), String(mib)]);
      return [run(c, a, { timeoutMs: 60_000 })];
    });
    await Promise.all(sends);
    const res = await Promise.race([
      Promise.all(recvs.map(async (p) => (await p.exited, JSON.parse(p.readLog().split('\n').find((l) => l.startsWith('{'))!) as Recv))),
      sleep(60_000).then(() => {
        throw new Error('rate check timed out');
      }),
    ]);
    const bytes = res.reduce((a, r) => a + r.bytes, 0);
    const ms = Math.max(...res.map((r) => r.last)) - Math.min(...res.map((r) => r.first));
    return (bytes * 8) / (ms / 1000) / 1e6;
  } finally {
    await Promise.all(recvs.map((p) => p.stop()));
  }
}

/**
 * One stream, then two senders into one host (its downlink must cap them) and one host sending
 * to two (its uplink must cap them). TCP/IP headers take ~5% of the wire, so payload near 95% of
 * the rate is a correctly shaped link; far above means shaping is not in effect.
 */
export async function checkRate(iperf: string, rateBps: number): Promise<Record<string, number>> {
  const [a, b, c] = [client(1), client(2), client(3)];
  const got = {
    single: await transfer(iperf, [a], [b], 24),
    downlink: await transfer(iperf, [b, c], [a], 16),
    uplink: await transfer(iperf, [a, a], [b, c], 16),
  };
  const nominal = rateBps / 1e6;
  for (const [k, v] of Object.entries(got)) {
    if (v < 0.8 * nominal || v > 1.02 * nominal) throw new Error(`rate check ${k}: ${v.toFixed(1)} Mbit/s, expected about ${nominal} Mbit/s`);
  }
  return got;
}
