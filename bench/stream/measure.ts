// One timed GET (directly or through an HTTP proxy) and the /proc figures of a process.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';

export interface Transfer {
  status: number;
  bytes: number;
  /** Request sent to first body byte. */
  ttfbMs: number;
  totalMs: number;
  /** Bytes per second over the whole transfer. */
  rate: number;
}

/** GET `url`, through `proxy` (host:port) when given, counting bytes; the body is discarded. */
export function timedGet(url: string, proxy?: { host: string; port: number }, onBytes?: (total: number) => void): Promise<Transfer> {
  const u = new URL(url);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      proxy
        ? { host: proxy.host, port: proxy.port, path: url, headers: { host: u.host }, agent: false }
        : { host: u.hostname, port: u.port, path: u.pathname + u.search, agent: false },
      (res) => {
        let bytes = 0;
        let ttfb = -1;
        res.on('data', (c: Buffer) => {
          if (ttfb < 0) ttfb = performance.now() - t0;
          bytes += c.length;
          onBytes?.(bytes);
        });
        res.once('error', reject);
        res.once('end', () => {
          const totalMs = performance.now() - t0;
          if (!res.complete) return reject(new Error(`${url}: body cut short after ${bytes} bytes`));
          resolve({ status: res.statusCode ?? 0, bytes, ttfbMs: ttfb, totalMs, rate: bytes / (totalMs / 1000) });
        });
      },
    );
    req.once('error', reject);
    req.end();
  });
}

/** VmHWM (peak resident set) and VmRSS of a process, in MiB. */
export function memoryOf(pid: number): { hwmMB: number; rssMB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  return { hwmMB: kb('VmHWM') / 1024, rssMB: kb('VmRSS') / 1024 };
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** PIDs of processes with an established TCP connection to `ip:port` right now (from ss -p). */
export function connectedPids(ip: string, port: number): number[] {
  const out = execFileSync('ss', ['-Htnp', 'state', 'established', `( dport = :${port} )`], { encoding: 'utf8' });
  const pids: number[] = [];
  for (const line of out.split('\n')) {
    const cols = line.trim().split(/\s+/);
    // Recv-Q Send-Q Local Peer Process (no state column when filtering by state).
    if (cols.length >= 5 && cols[3] === `${ip}:${port}`) for (const m of line.matchAll(/pid=(\d+)/g)) pids.push(Number(m[1]));
  }
  return pids;
}

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
}
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/**
 * Run `fn` and return the CPU seconds each named process used meanwhile, the client (this
 * process) included. Read from /proc, so it counts every thread, GC and hashing included.
 */
export async function cpuDuring<T>(pids: Record<string, number>, fn: () => Promise<T>): Promise<{ value: T; cpu: Record<string, number> }> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSecondsOf(pid)]));
  const self0 = process.cpuUsage();
  const value = await fn();
  const selfD = process.cpuUsage(self0);
  const cpu: Record<string, number> = { client: (selfD.user + selfD.system) / 1e6 };
  for (const [k, pid] of Object.entries(pids)) cpu[k] = cpuSecondsOf(pid) - before[k];
  return { value, cpu };
}
