import type { Cdn } from '../cdn/cdn.js';
import type { CdnRequest, CdnTask } from '../cdn/cdn-task.js';
import type { Logger } from '../../shared/log/index.js';

export interface PrefetcherOptions {
  cdn: Cdn;
  log: Logger;
  now: () => number;
  /** Demand registrations usually follow a hint within milliseconds: let them go first. */
  graceMs?: number;
  /** How often a waiting prefetch checks whether the source link has gone idle. */
  pollMs?: number;
  /** A hint older than this is dropped: the pull it was for is long over. */
  maxAgeMs?: number;
  maxQueued?: number;
  onFetched?: () => void;
}

interface Queued {
  req: CdnRequest;
  at: number;
}

/**
 * Blobs dfdaemons hint at (the other layers of an image a client is pulling), fetched into the
 * CDN one at a time and only while no other CDN fetch runs. A client that copies layers one
 * after another (skopeo into dir:) then finds each next layer already at the CDN, instead of
 * waiting for its origin fetch; and because a prefetch never runs beside a demand fetch, it
 * never slows a blob someone is waiting for. The price is one origin copy of a layer no host
 * turns out to need (all of them had it), which `prefetch: false` avoids.
 */
export class Prefetcher {
  private readonly queue = new Map<string, Queued>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private closed = false;

  constructor(private readonly o: PrefetcherOptions) {}

  /** Queue what the CDN has not got; returns how many were queued. */
  hint(reqs: CdnRequest[]): number {
    let queued = 0;
    for (const req of reqs) {
      if (this.queue.size >= (this.o.maxQueued ?? 1024)) break;
      if (this.queue.has(req.taskId) || this.known(req.taskId)) continue;
      this.queue.set(req.taskId, { req, at: this.o.now() });
      queued++;
    }
    if (queued > 0) this.schedule(this.o.graceMs ?? 250);
    return queued;
  }

  get size(): number {
    return this.queue.size;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.queue.clear();
  }

  private known(taskId: string): boolean {
    const t = this.o.cdn.get(taskId);
    return t !== undefined && t.status !== 'FAILED' && t.status !== 'SOURCE_ERROR';
  }

  private schedule(ms: number): void {
    if (this.closed || this.running || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.step();
    }, ms);
    this.timer.unref();
  }

  private async step(): Promise<void> {
    if (this.closed || this.running) return;
    if (this.o.cdn.fetching() > 0) return this.schedule(this.o.pollMs ?? 100);
    const next = this.queue.entries().next();
    if (next.done) return;
    const [taskId, { req, at }] = next.value;
    this.queue.delete(taskId);
    if (this.o.now() - at > (this.o.maxAgeMs ?? 600_000) || this.known(taskId)) return this.step();
    this.running = true;
    try {
      const task = this.o.cdn.ensure(req);
      await ended(task);
      if (task.status === 'SUCCESS') this.o.onFetched?.();
      this.o.log.info({ taskId, status: task.status }, 'prefetched');
    } catch (f) {
      // A source failure remembered by the CDN (failAccessInterval) or one of this fetch.
      this.o.log.debug({ taskId, err: (f as { message?: string }).message }, 'prefetch failed');
    } finally {
      this.running = false;
    }
    if (this.queue.size > 0) this.schedule(0);
  }
}

function ended(task: CdnTask): Promise<void> {
  if (task.status !== 'RUNNING' && task.status !== 'WAITING') return Promise.resolve();
  return new Promise((resolve) => task.once('end', () => resolve()));
}
