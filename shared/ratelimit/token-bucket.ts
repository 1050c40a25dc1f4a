import { setTimeout as sleep } from 'node:timers/promises';

export interface Clock {
  now(): number;
}
const realClock: Clock = { now: () => performance.now() };

/**
 * A token bucket in bytes per second, shared by every stream it throttles. Waiters are served
 * in arrival order so one greedy stream cannot starve the others. `rate <= 0` means unlimited.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private tail: Promise<void> = Promise.resolve();
  readonly burst: number;

  constructor(
    readonly rate: number,
    opts: { burst?: number; clock?: Clock } = {},
  ) {
    // A burst of 1/20 s keeps a 10 s window within a few percent of the rate.
    this.burst = opts.burst ?? Math.max(64 * 1024, Math.floor(rate / 20));
    this.clock = opts.clock ?? realClock;
    this.tokens = this.burst;
    this.last = this.clock.now();
  }
  private readonly clock: Clock;

  get unlimited(): boolean {
    return !(this.rate > 0) || !Number.isFinite(this.rate);
  }

  private refill(): void {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
  }

  /** Resolve once `n` bytes may pass. Large requests are taken in burst-sized steps. */
  take(n: number, signal?: AbortSignal): Promise<void> {
    if (this.unlimited || n <= 0) return Promise.resolve();
    const run = this.tail.then(() => this.consume(n, signal));
    // Keep the queue alive after an aborted waiter.
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async consume(n: number, signal?: AbortSignal): Promise<void> {
    let left = n;
    while (left > 0) {
      signal?.throwIfAborted();
      this.refill();
      const step = Math.min(left, this.burst);
      if (this.tokens >= step) {
        this.tokens -= step;
        left -= step;
        continue;
      }
      const waitMs = ((step - this.tokens) / this.rate) * 1000;
      await sleep(Math.max(1, Math.ceil(waitMs)), undefined, { signal });
    }
  }
}
