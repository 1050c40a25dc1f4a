/**
 * Buffers of one size shared by many streams, never more than `max` of them: past that a stream
 * waits, first come first served, for one to come back. Memory is then bounded by the pool,
 * whatever the number of streams, instead of growing with every client that stops reading.
 * Buffers are made on first need and kept: a daemon at rest holds only what its busiest moment used.
 */
export class BoundedBufferPool {
  private readonly free: Buffer[] = [];
  private readonly waiters: Array<(b: Buffer) => void> = [];
  private made = 0;

  constructor(
    readonly size: number,
    readonly max: number,
  ) {
    if (max < 1) throw new RangeError('a buffer pool needs at least one buffer');
  }

  /** Buffers handed out and not yet given back. */
  get inUse(): number {
    return this.made - this.free.length;
  }

  /** Buffers this pool has allocated so far (at most `max`). */
  get allocated(): number {
    return this.made;
  }

  /** Streams waiting for a buffer. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** A free buffer, now if there is one, else once one comes back; rejects when `signal` aborts first. */
  acquire(signal?: AbortSignal): Promise<Buffer> {
    signal?.throwIfAborted();
    const b = this.free.pop();
    if (b) return Promise.resolve(b);
    if (this.made < this.max) {
      this.made++;
      return Promise.resolve(Buffer.allocUnsafeSlow(this.size));
    }
    return new Promise((resolve, reject) => {
      const give = (buf: Buffer) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(buf);
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(give);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal!.reason);
      };
      this.waiters.push(give);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Give `b` back: to the longest waiter, else to the free list. Only once per acquire. */
  release(b: Buffer): void {
    const next = this.waiters.shift();
    if (next) next(b);
    else this.free.push(b);
  }
}
