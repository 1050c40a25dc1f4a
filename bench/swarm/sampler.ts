// Machine-wide CPU during a run, from /proc. With 2 cores and up to 16 clients plus their
// daemons on one box, a run can be CPU-bound rather than link-bound; and the box is shared
// with other sessions, so CPU used by processes outside the benchmark's namespaces is counted
// separately ("foreign") to tell a slow run from a crowded machine.
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { sleep } from '../../test/fixtures/proc.js';

const CLK_TCK = 100;

function machine(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + (f[4] ?? 0);
  return { busy: f.reduce((a, b) => a + b, 0) - idle, total: f.reduce((a, b) => a + b, 0) };
}

/** Inode numbers of our namespaces, as /proc/<pid>/ns/net shows them. */
export function nsInodes(names: readonly string[]): Set<number> {
  return new Set(names.map((n) => statSync(`/run/netns/${n}`).ino));
}

interface Proc { ticks: number; ours: boolean; comm: string }

/** CPU ticks of every user process (not this harness, not kernel threads), and whose it is. */
function procTicks(ours: Set<number>): Map<number, Proc> {
  const out = new Map<number, Proc>();
  for (const ent of readdirSync('/proc')) {
    const pid = Number(ent);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (f[1] === '2' || pid === 2) continue;
      const ns = Number(/\[(\d+)\]/.exec(readlinkSync(`/proc/${pid}/ns/net`))?.[1]);
      out.set(pid, { ticks: Number(f[11]) + Number(f[12]), ours: ours.has(ns), comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) });
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

export interface CpuSummary {
  /** Mean busy fraction of all cores over the run. */
  mean: number;
  /** Share of 250 ms samples with every core at least 95% busy. */
  saturated: number;
  /** Cores' worth of CPU used meanwhile by processes that are not part of the benchmark. */
  foreign: number;
  /** CPU seconds of the benchmark's own processes by command (skopeo, node, docker-registry);
   * sampled every 250 ms, so a process loses at most its last 250 ms. */
  bySec: Record<string, number>;
}

export class CpuSampler {
  private first = machine();
  private last = this.first;
  private samples: number[] = [];
  private prev: Map<number, Proc>;
  private foreign = 0;
  private readonly byComm = new Map<string, number>();
  private readonly t0 = performance.now();
  private timer: NodeJS.Timeout;

  constructor(private readonly ours: Set<number>) {
    this.prev = procTicks(ours);
    this.timer = setInterval(() => this.tick(), 250);
  }

  private tick(): void {
    const s = machine();
    const dt = s.total - this.last.total;
    if (dt > 0) this.samples.push((s.busy - this.last.busy) / dt);
    this.last = s;
    const cur = procTicks(this.ours);
    for (const [pid, c] of cur) {
      // A process born since the last sample counts from zero: its whole life was in the run.
      const d = c.ticks - (this.prev.get(pid)?.ticks ?? 0);
      if (d <= 0) continue;
      if (!c.ours) this.foreign += d;
      else this.byComm.set(c.comm, (this.byComm.get(c.comm) ?? 0) + d);
    }
    this.prev = cur;
  }

  stop(): CpuSummary {
    clearInterval(this.timer);
    this.tick();
    const s = machine();
    const dt = s.total - this.first.total;
    const secs = (performance.now() - this.t0) / 1000;
    return {
      mean: dt > 0 ? (s.busy - this.first.busy) / dt : 0,
      saturated: this.samples.length ? this.samples.filter((x) => x >= 0.95).length / this.samples.length : 0,
      foreign: secs > 0 ? this.foreign / CLK_TCK / secs : 0,
      bySec: Object.fromEntries([...this.byComm].map(([k, v]) => [k, v / CLK_TCK])),
    };
  }
}

/**
 * Before a run, wait (bounded) for other sessions' CPU use to drop, so that a result is not
 * just a measure of someone else's test suite. Returns the foreign load finally seen.
 */
export async function waitQuiet(ours: Set<number>, maxMs: number, threshold = 0.25): Promise<number> {
  const deadline = Date.now() + maxMs;
  for (;;) {
    const s = new CpuSampler(ours);
    await sleep(1_500);
    const { foreign } = s.stop();
    if (foreign <= threshold || Date.now() >= deadline) return foreign;
  }
}
