// Summary of a V8 .cpuprofile (from node --cpu-prof), limited to the run (start-up is not what
// we measure): self time by coarse category, and the hottest functions each with the project
// function that called them, so "hashing" reads as "hashing in cutPieces" rather than a guess.
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';

interface Frame { functionName: string; url: string; lineNumber: number }
interface Node { id: number; callFrame: Frame; children?: number[] }
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[] }

export interface ProfileSummary {
  totalMs: number;
  idleMs: number;
  categories: Record<string, number>;
  top: { fn: string; ms: number; callers: string }[];
}

const PROJECT = /dist\/(supernode|dfdaemon|shared)\//;

function category(f: Frame): string {
  const { url, functionName: fn } = f;
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'gc';
  if (fn === '(program)') return 'native, unattributed';
  if (PROJECT.test(url)) return 'project code';
  if (/node_modules\/(fastify|find-my-way|light-my-request|avvio|@fastify)/.test(url)) return 'fastify';
  if (/node_modules\/(pino|sonic-boom|thread-stream)/.test(url)) return 'pino';
  if (/node_modules\//.test(url)) return 'other deps';
  if (url === '') return /^(read|write|writev|writeBuffer|writeBuffers|writeUtf8String|writeLatin1String|openFileHandle|close|fstat|fsync)$/.test(fn) ? 'syscalls (fs/net)' : 'native, other';
  if (/crypto/.test(url)) return 'node crypto (hashing)';
  if (/_http|internal\/http|\bnet\b|stream_base/.test(url)) return 'node http/net';
  if (/streams/.test(url)) return 'node streams';
  if (/fs/.test(url)) return 'node fs';
  if (/modules|loader|realm/.test(url)) return 'module loading';
  return 'node other';
}

const label = (f: Frame) => `${f.functionName || '(anonymous)'}${f.url ? ` ${basename(f.url)}:${f.lineNumber + 1}` : ''}`;

/** `skipMs`: leave out the first part of the profile (the process started before the run). */
export async function summarise(file: string, skipMs = 0): Promise<ProfileSummary> {
  const p = JSON.parse(await readFile(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const callerOf = (id: number): string => {
    for (let cur = parent.get(id); cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)!.callFrame;
      if (PROJECT.test(f.url)) return label(f);
    }
    return '–';
  };
  const selfUs = new Map<number, number>();
  let t = 0;
  p.samples.forEach((id, i) => {
    t += p.timeDeltas[i] ?? 0;
    if (t >= skipMs * 1000) selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  });
  const cats: Record<string, number> = {};
  const fns = new Map<string, { ms: number; callers: Map<string, number> }>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const f = byId.get(id)!.callFrame;
    const ms = us / 1000;
    total += ms;
    if (f.functionName === '(idle)') idle += ms;
    const c = category(f);
    cats[c] = (cats[c] ?? 0) + ms;
    const e = fns.get(label(f)) ?? { ms: 0, callers: new Map<string, number>() };
    e.ms += ms;
    const by = callerOf(id);
    e.callers.set(by, (e.callers.get(by) ?? 0) + ms);
    fns.set(label(f), e);
  }
  const top = [...fns.entries()]
    .filter(([k]) => !k.startsWith('(idle)'))
    .sort((a, b) => b[1].ms - a[1].ms)
    .slice(0, 10)
    .map(([fn, e]) => ({
      fn,
      ms: Math.round(e.ms),
      callers: [...e.callers].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([c, ms]) => `${c} ${Math.round(ms)}`).join(', '),
    }));
  for (const k of Object.keys(cats)) cats[k] = Math.round(cats[k]);
  return { totalMs: Math.round(total), idleMs: Math.round(idle), categories: cats, top };
}

export function profileMarkdown(name: string, s: ProfileSummary): string {
  const busy = s.totalMs - s.idleMs;
  const cats = Object.entries(s.categories).filter(([k, v]) => k !== 'idle' && v >= busy / 100).sort((a, b) => b[1] - a[1]);
  return [
    `**${name}**: ${(busy / 1000).toFixed(2)} s on CPU in ${(s.totalMs / 1000).toFixed(1)} s of the run (${((100 * busy) / Math.max(1, s.totalMs)).toFixed(0)}% of one core).`,
    '',
    `By category: ${cats.map(([k, v]) => `${k} ${((100 * v) / Math.max(1, busy)).toFixed(0)}%`).join(', ')}.`,
    '',
    '| self ms | function | called from (project code, ms) |',
    '|---|---|---|',
    ...s.top.map((t) => `| ${t.ms} | \`${t.fn}\` | ${t.callers} |`),
  ].join('\n');
}

/**
 * The supernode's profile and the first and last dfdaemons' from one run's --cpu-prof directory
 * (files are named CPU.<date>.<time>.<pid>...; other attempts' pids are not in `procs`).
 */
export async function profileSection(dir: string, procs: { pid: number; name: string; startedAt?: number }[], title: string, n: number, t0Epoch: number): Promise<string> {
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const out = [`### CPU profile: ${title}`, ''];
  for (const file of (await readdir(dir)).filter((x) => x.endsWith('.cpuprofile')).sort()) {
    const proc = byPid.get(Number(/^CPU\.\d+\.\d+\.(\d+)\./.exec(file)?.[1]));
    if (!proc || (proc.name.startsWith('dfdaemon') && proc.name !== 'dfdaemon-dfb-c1' && proc.name !== `dfdaemon-dfb-c${n}`)) continue;
    const skip = proc.startedAt ? Math.max(0, t0Epoch - proc.startedAt) : 0;
    out.push(profileMarkdown(proc.name, await summarise(join(dir, file), skip)), '');
  }
  return out.join('\n');
}
