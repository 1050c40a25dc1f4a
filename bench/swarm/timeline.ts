// node dist/bench/swarm/timeline.js <kept run dir> [--pieces | --spread]
// Reads one run's traces (kept with --keep) and prints, per peer, when each piece of the big
// blob was fetched and from whom, so a slow run can be read piece by piece. --spread prints how
// far the peers trail the CDN: pieces held against pieces fetched from the origin at a few
// moments, and per piece how long after the CDN had it its first, median and last peer did.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface Rec { k: string; p?: string; o?: string; range?: string; pn?: string; ra?: string; t0: number; th?: number; t1: number; marks?: number[]; bytes?: number }

const [dir, flag] = process.argv.slice(2);
if (!dir) {
  process.stderr.write('usage: timeline.js <kept run dir> [--pieces | --spread]\n');
  process.exit(2);
}
const load = (f: string): Rec[] => readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Rec).filter((r) => r.k !== 'sec');
const sn = load(join(dir, 'supernode/trace.jsonl'));
const origin = sn.filter((r) => r.k === 'out' && /\/blobs\//.test(r.p ?? '')).sort((a, b) => (b.bytes ?? 0) - (a.bytes ?? 0))[0];
const t0 = Math.min(...sn.map((r) => r.t0));
const s = (t: number) => ((t - t0) / 1000).toFixed(2);
if (origin) process.stdout.write(`origin→CDN ${s(origin.t0)}–${s(origin.t1)} s; 4 MiB marks at ${(origin.marks ?? []).map(s).join(' ')}\n`);

const hostOf = (o: string | undefined) => (o?.match(/198\.18\.(\d+)\.(\d+)/) ? (o.includes('198.18.0.11') ? 'CDN' : `c${o.match(/198\.18\.1\.(\d+)/)?.[1] ?? '?'}`) : '?');
const peers = readdirSync(dir).filter((d) => /^dfb-c\d+$/.test(d)).sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)));
const traces = new Map(peers.map((p) => [p, load(join(dir, p, 'dfdaemon/trace.jsonl'))]));
// Pieces as their servers saw them, for piece clients that diagnostics channels cannot see.
const servedTo = (ip: string): Rec[] =>
  [['CDN', sn] as const, ...[...traces].map(([p, recs]) => [`c${p.slice(5)}`, recs] as const)].flatMap(([src, recs]) =>
    recs.filter((r) => r.k === 'in' && /^\/(peer\/file|download)\//.test(r.p ?? '') && (r.ra ?? '').replace(/^::ffff:/, '') === ip).map((r) => ({ ...r, o: src === 'CDN' ? '198.18.0.11' : `198.18.1.${src.slice(1)}` })),
  );
for (const p of peers) {
  const recs = traces.get(p)!;
  const own = recs.filter((r) => r.k === 'out' && /^\/(peer\/file|download)\//.test(r.p ?? ''));
  const pieces = own.length > 0 ? own : servedTo(`198.18.1.${p.slice(5)}`);
  const byTask = new Map<string, Rec[]>();
  for (const r of pieces) {
    const id = /([0-9a-f]{64})/.exec(r.p!)?.[1] ?? '';
    byTask.set(id, [...(byTask.get(id) ?? []), r]);
  }
  const big = [...byTask.values()].sort((a, b) => b.length - a.length)[0] ?? [];
  const fromCdn = big.filter((r) => r.p!.startsWith('/download/')).length;
  const end = Math.max(...big.map((r) => r.t1));
  const tasks = recs.filter((r) => r.k === 'out' && (r.p ?? '').startsWith('/peer/task'));
  let maxConc = 0;
  const edges = big.flatMap((r) => [[r.t0, 1], [r.t1, -1]] as const).slice().sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  edges.reduce((c, [, d]) => ((maxConc = Math.max(maxConc, c + d)), c + d), 0);
  process.stdout.write(`${p}: ${big.length} pieces (${fromCdn} from CDN), last at ${s(end)} s, ≤${maxConc} in flight, ${tasks.length} /peer/task\n`);
  if (flag === '--pieces') {
    for (const r of big.sort((a, b) => a.t0 - b.t0)) {
      process.stdout.write(`  piece ${(r.pn ?? r.range ?? '?').padStart(4)} from ${hostOf(r.o).padEnd(4)} ${s(r.t0)}–${s(r.t1)} s\n`);
    }
  }
}

if (flag === '--spread' && origin) {
  // "Has it" is the peer's success report reaching the supernode (what the scheduler sees); the
  // CDN is taken to get the blob's bytes evenly over its origin fetch (it runs at line rate).
  // The big blob, as above: the task with the most piece reports.
  const perTask = new Map<string, number>();
  for (const r of sn) {
    const id = r.k === 'in' && (r.p ?? '').includes('result=') ? /taskId=([0-9a-f]{64})/.exec(r.p!)?.[1] : undefined;
    if (id) perTask.set(id, (perTask.get(id) ?? 0) + 1);
  }
  const task = [...perTask].sort((a, b) => b[1] - a[1])[0]?.[0];
  const reports = sn
    .filter((r) => r.k === 'in' && task && (r.p ?? '').includes(task) && (r.p ?? '').includes('result='))
    .map((r) => ({ peer: (r.ra ?? '').replace(/^::ffff:/, ''), start: Number(new URL(`http://x${r.p}`).searchParams.get('range')?.split('-')[0]), t: r.t0 }));
  const pieceLen = Math.min(...reports.map((r) => r.start).filter((x) => x > 0));
  const count = Math.max(...reports.map((r) => r.start)) / pieceLen + 1;
  const at = (n: number) => origin.t0 + ((origin.t1 - origin.t0) * (n + 1)) / count;
  const ips = [...new Set(reports.map((r) => r.peer))].sort();
  for (const f of [0.25, 0.5, 0.75, 1]) {
    const t = origin.t0 + f * (origin.t1 - origin.t0);
    const held = ips.map((ip) => reports.filter((r) => r.peer === ip && r.t <= t).length);
    process.stdout.write(`at ${s(t)} s the CDN has ${Math.floor(f * count)} of ${count} pieces; peers hold ${held.join(' ')}\n`);
  }
  for (let n = 0; n < count; n++) {
    if (n % 8 !== 0 && n < count - 3) continue;
    const ts = reports.filter((r) => r.start === n * pieceLen).map((r) => r.t).sort((a, b) => a - b);
    const after = (t: number | undefined) => (t === undefined ? '–' : `+${((t - at(n)) / 1000).toFixed(2)}`);
    process.stdout.write(`piece ${String(n).padStart(4)}: CDN ${s(at(n))} s; first peer ${after(ts[0])}, median ${after(ts[Math.floor(ts.length / 2)])}, last ${after(ts[ts.length - 1])} s\n`);
  }
}
