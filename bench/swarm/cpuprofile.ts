// Summary of a V8 .cpuprofile (from node --cpu-prof): self time by function and by coarse
// category, enough to say whether a daemon spends its CPU hashing, copying, in HTTP or idle.
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number; children?: number[] }
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }

export interface ProfileSummary {
  totalMs: number;
  idleMs: number;
  categories: Record<string, number>;
  top: { fn: string; ms: number }[];
}

function category(url: string, fn: string): string {
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'gc';
  if (fn === '(program)') return 'program (native, unattributed)';
  if (/dist\/(supernode|dfdaemon|shared)\//.test(url)) return 'project code';
  if (/node_modules\/(undici)/.test(url)) return 'undici';
  if (/node_modules\/(fastify|find-my-way|light-my-request|avvio|@fastify)/.test(url)) return 'fastify';
  if (/node_modules\/(pino|sonic-boom|thread-stream)/.test(url)) return 'pino';
  if (/node_modules\/prom-client/.test(url)) return 'prom-client';
  if (/node_modules\//.test(url)) return 'other deps';
  if (/^node:(internal\/)?(crypto|internal\/crypto)/.test(url) || /crypto/.test(url)) return 'node crypto';
  if (/^node:(internal\/)?(fs|internal\/fs)/.test(url) || /\/fs\//.test(url)) return 'node fs';
  if (/^node:(internal\/)?(stream|internal\/streams)/.test(url) || /streams/.test(url)) return 'node streams';
  if (/^node:(internal\/)?(http|_http|net|internal\/http)/.test(url) || /_http|net\.js|http/.test(url)) return 'node http/net';
  if (url === '' ) return `native: ${fn || '(anonymous)'}`.slice(0, 40);
  return 'node other';
}

export async function summarise(file: string): Promise<ProfileSummary> {
  const p = JSON.parse(await readFile(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  p.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  const cats: Record<string, number> = {};
  const fns = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    const { functionName, url, lineNumber } = n.callFrame;
    const ms = us / 1000;
    total += ms;
    if (functionName === '(idle)') idle += ms;
    const c = category(url, functionName);
    cats[c] = (cats[c] ?? 0) + ms;
    const key = `${functionName || '(anonymous)'} ${url ? `${basename(url)}:${lineNumber + 1}` : ''}`.trim();
    fns.set(key, (fns.get(key) ?? 0) + ms);
  }
  const top = [...fns.entries()].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, 12).map(([fn, ms]) => ({ fn, ms: Math.round(ms) }));
  for (const k of Object.keys(cats)) cats[k] = Math.round(cats[k]);
  return { totalMs: Math.round(total), idleMs: Math.round(idle), categories: cats, top };
}

export function profileMarkdown(name: string, s: ProfileSummary): string {
  const busy = s.totalMs - s.idleMs;
  const cats = Object.entries(s.categories).filter(([k]) => k !== 'idle').sort((a, b) => b[1] - a[1]);
  const lines = [
    `**${name}**: ${(busy / 1000).toFixed(2)} s on CPU of ${(s.totalMs / 1000).toFixed(1)} s profiled (${((100 * busy) / Math.max(1, s.totalMs)).toFixed(0)}% busy).`,
    '',
    `By category: ${cats.map(([k, v]) => `${k} ${((100 * v) / Math.max(1, busy)).toFixed(0)}%`).join(', ')}.`,
    '',
    '| self ms | function |',
    '|---|---|',
    ...s.top.map((t) => `| ${t.ms} | \`${t.fn}\` |`),
  ];
  return lines.join('\n');
}

/**
 * The supernode's profile and the first and last dfdaemons' from one run's --cpu-prof directory
 * (files are named CPU.<date>.<time>.<pid>...; other attempts' pids are not in `procs`).
 */
export async function profileSection(dir: string, procs: { pid: number; name: string }[], title: string, n: number): Promise<string> {
  const byPid = new Map(procs.map((p) => [p.pid, p.name]));
  const out = [`### CPU profile: ${title}`, ''];
  for (const file of (await readdir(dir)).filter((x) => x.endsWith('.cpuprofile')).sort()) {
    const name = byPid.get(Number(/^CPU\.\d+\.\d+\.(\d+)\./.exec(file)?.[1]));
    if (!name || (name.startsWith('dfdaemon') && name !== 'dfdaemon-dfb-c1' && name !== `dfdaemon-dfb-c${n}`)) continue;
    out.push(profileMarkdown(name, await summarise(join(dir, file))), '');
  }
  return out.join('\n');
}
