// npm run bench:swarm -- [--n 1,4,8,16] [--image small|large|both] [--modes direct,proxy,p2p] [--rate 100mbit]
// Builds the simulated site, runs the matrix, writes <out>.md, <out>-chart.svg and <out>.jsonl,
// and tears everything down whatever happens (try/finally here, SIGINT/SIGTERM via onAbort).
import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, release } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { onAbort, tmpDir } from '../../test/fixtures/proc.js';
import { claimDir, processRunning, reclaimDir, releaseDir } from '../../test/fixtures/sysdirs.js';
import { parseArgs, parseRate } from './args.js';
import { profileSection } from './cpuprofile.js';
import { client, leftovers, ORIGIN, removeLeftovers, SUPER, Topology } from './net.js';
import { chart, documentMd, type Meta } from './report.js';
import { runOnce, type ImageInfo, type RunResult } from './run.js';
import { startRegistry, type Service } from './services.js';
import { nsInodes } from './sampler.js';
import { buildRevision, checkRate, codeState, pushImages, snapshotBuild } from './setup.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const CONTAINERS_CACHE = '/var/lib/containers';
/** Cores of CPU used by other sessions above which a run counts as disturbed. */
const DISTURBED = 0.3;
const log = (msg: string) => process.stderr.write(`[swarm ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => (stopping = true));

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.reportOnly) return rewriteReport(resolve(REPO, args.out));
  const command = `npm run bench:swarm -- ${process.argv.slice(2).join(' ')}`.trim();
  if (process.getuid?.() !== 0) throw new Error('needs root (ip netns, tc)');
  const left = await leftovers();
  if (left.ns.length + left.links.length > 0) {
    const what = [...left.ns, ...left.links].join(', ');
    if (!args.cleanLeftovers) throw new Error(`leftovers of an earlier run: ${what}; rerun with --clean-leftovers to delete them`);
    await removeLeftovers(left);
  }

  const base = await tmpDir('swarm');
  const topo = new Topology();
  const unregister = onAbort(() => topo.destroy());
  const ownsCache = await claimDir(CONTAINERS_CACHE, 0o700);
  let origin: Service | undefined;
  const outDir = resolve(REPO, dirname(args.out));
  const stem = resolve(REPO, args.out);
  const profDir = join(base.path, 'profiles');
  const results: RunResult[] = [];
  const profiles: string[] = [];
  try {
    const code = await codeState(REPO, args.code, args.patches);
    const snap = args.code ? await buildRevision(REPO, args.code, join(base.path, 'code'), args.patches) : await snapshotBuild(REPO, join(base.path, 'code'));
    const tracer = args.trace ? pathToFileURL(join(snap, 'dist/bench/swarm/trace.js')).href : '';
    log(`code under test: ${code} (snapshot in ${snap})`);

    await topo.createBridge();
    const maxN = Math.max(3, ...args.ns);
    for (const h of [ORIGIN, SUPER, ...Array.from({ length: maxN }, (_, i) => client(i + 1))]) await topo.addHost(h);
    origin = await startRegistry(ORIGIN, join(base.path, 'origin'));
    log('pushing images');
    const seed = `swarm-${Date.now()}`;
    const images: ImageInfo[] = await pushImages(args.images, seed);
    const warmUp = args.warmUp ? (await pushImages(['warmup'], seed))[0] : undefined;
    await topo.shape(args.rate, args.originRate || args.rate);
    const ours = nsInodes(topo.hosts.map((h) => h.ns));
    const rate = await checkRate(join(snap, 'dist/bench/swarm/iperf.js'), args.rateBps);
    log(`rate check (payload Mbit/s): ${JSON.stringify(rate)}`);

    await mkdir(outDir, { recursive: true });
    const meta: Meta = {
      kind: 'meta', command, date: new Date().toISOString(), code: [code, ...(Object.keys(args.supernodeBase).length ? [`supernode base ${JSON.stringify(args.supernodeBase)}`] : []), ...(args.originRate ? [`origin link ${args.originRate}`] : []), ...(Object.keys(args.dfdaemonSet).length ? [`dfdaemon ${JSON.stringify(args.dfdaemonSet)}`] : []), ...(Object.keys(args.daemonEnv).length ? [`daemon env ${JSON.stringify(args.daemonEnv)}`] : []), ...(args.dest !== 'dir' ? [`skopeo into ${args.dest}:`] : []), ...(warmUp ? ['daemons warmed up by a pull of another image'] : [])].join('; '), nodeOptions: args.nodeOptions, dest: args.dest,
      machine: `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Linux ${release()}`,
      rate: args.rate, rateBps: args.rateBps, rateCheck: rate, images,
    };
    await writeFile(`${stem}.jsonl`, `${JSON.stringify(meta)}\n`);
    const write = async () => {
      await writeFile(`${stem}.md`, documentMd(meta, results, profiles, `${stem.split('/').pop()}-chart.svg`));
      await writeFile(`${stem}-chart.svg`, chart(results));
    };

    for (const image of images) {
      for (const n of args.ns) {
        for (const mode of args.modes) {
          if (stopping) throw new Error('interrupted');
          if (mode !== 'p2p' && n > args.baselineMaxN) continue;
          // The fluid bound: the image over the slowest link it must cross (the origin's, if slower).
          const tStar = (image.bytes * 8) / Math.min(args.rateBps, args.originRate ? parseRate(args.originRate) : Infinity);
          log(`run ${image.name} N=${n} ${mode}`);
          const runProf = args.profile ? join(profDir, `${image.name}-${n}-${mode}`) : '';
          if (runProf) await mkdir(runProf, { recursive: true });
          // The box is shared: a run that other sessions' CPU use disturbed is repeated, and the
          // least disturbed attempt is kept (its foreign load is reported either way).
          let r: RunResult | undefined;
          for (let attempt = 1; attempt <= 1 + args.retries; attempt++) {
            const x = await runOnce({
              image, n, mode, rateBps: args.rateBps, tStar,
              timeoutMs: (60 + args.timeoutFactor * n * tStar) * 1000,
              dir: join(base.path, `run-${image.name}-${n}-${mode}`),
              daemon: { root: snap, tracer, cpuProfDir: mode === 'p2p' ? runProf : '', nodeOptions: args.nodeOptions, supernodeBase: args.supernodeBase, dfdaemonSet: args.dfdaemonSet, env: args.daemonEnv },
              originLog: origin.proc.logFile,
              ours,
              quietWaitMs: args.quietWaitS * 1000,
              keepDir: args.keep ? resolve(args.keep, `${image.name}-${n}-${mode}-${attempt}`) : undefined,
              dest: args.dest,
              warmUp,
            });
            if (!r || x.cpu.foreign < r.cpu.foreign) r = x;
            // Long runs are averaged over enough time that a burst of foreign load matters less.
            if (x.cpu.foreign <= DISTURBED || (x.wall ?? 0) > 180) break;
            log(`  other sessions used ${x.cpu.foreign.toFixed(2)} cores during the run (attempt ${attempt})`);
          }
          r = r!;
          // Another process may have released the cache dir meanwhile and skopeo re-created it.
          await reclaimDir(CONTAINERS_CACHE, ownsCache);
          results.push(r);
          process.stdout.write(`${JSON.stringify(r)}\n`);
          await appendFile(`${stem}.jsonl`, `${JSON.stringify(r)}\n`);
          log(`  wall ${r.wall?.toFixed(2) ?? 'FAILED'} s (${r.wallOverTStar?.toFixed(2) ?? '–'}×T*), egress ${r.egressCopies.toFixed(3)} copies${r.errors.length ? `, errors: ${r.errors.join('; ').slice(0, 400)}` : ''}`);
          if (runProf && mode === 'p2p') profiles.push(await profileSection(runProf, r.procs, `${image.name} image, N=${n}, P2P`, n, r.t0Epoch));
          await write();
        }
      }
    }
    log(`wrote ${stem}.md, ${stem}-chart.svg, ${stem}.jsonl`);
  } finally {
    await origin?.proc.stop().catch(() => undefined);
    await topo.destroy();
    unregister();
    if (ownsCache && !processRunning(['skopeo'])) await releaseDir(CONTAINERS_CACHE, 'tree');
    await base.cleanup();
  }
}

/** Rebuild <out>.md and the chart from <out>.jsonl, e.g. after changing the report's layout. */
async function rewriteReport(stem: string): Promise<void> {
  const lines = (await readFile(`${stem}.jsonl`, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Meta | RunResult);
  const meta = lines.find((l): l is Meta => 'kind' in l && l.kind === 'meta');
  if (!meta) throw new Error(`${stem}.jsonl has no meta line`);
  const results = lines.filter((l): l is RunResult => !('kind' in l));
  const old = await readFile(`${stem}.md`, 'utf8').catch(() => '');
  const profiles = old.includes('### CPU profile') ? [old.slice(old.indexOf('### CPU profile'))] : [];
  await writeFile(`${stem}.md`, documentMd(meta, results, profiles, `${stem.split('/').pop()}-chart.svg`));
  await writeFile(`${stem}-chart.svg`, chart(results));
  log(`rewrote ${stem}.md and ${stem}-chart.svg from ${results.length} runs`);
}

main().catch((err: Error) => {
  log(`failed: ${err.stack ?? err.message}`);
  process.exitCode = 1;
});
