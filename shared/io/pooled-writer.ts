import type { Writable } from 'node:stream';
import type { BoundedBufferPool } from './bounded-pool.js';

/** The client kept its connection but took no bytes for the idle time, and was cut. */
export class ClientIdleError extends Error {
  readonly code = 'CLIENT_IDLE';
  constructor(readonly idleMs: number) {
    super(`the client took no bytes for ${Math.round(idleMs / 1000)} s`);
  }
}

export interface PooledWriterOptions {
  /** Buffers one stream keeps in flight: one being filled while the others drain (default 3). */
  maxInFlight?: number;
  /**
   * A buffer goes to the socket in writes of at most this size (default 256 KiB), so that a slow
   * client that is reading shows progress well within idleMs (a 1 MiB write completes only once
   * all of it left: at 30 KB/s, after 35 s).
   */
  slice?: number;
  /** Cut `out` when it takes no bytes for this long while some wait for it (0: never). */
  idleMs?: number;
}

const noop = () => undefined;

/**
 * Writes to a socket through buffers borrowed from a shared pool: a buffer goes back once the
 * socket has taken all of it (or closed), so a stream holds at most maxInFlight of them, and a
 * stream that finds the pool empty waits. Waiting for the pool or for the data source is not
 * the client idling; a write that stays pending for a whole idle period is, and the socket is
 * destroyed, which returns its buffers.
 */
export class PooledWriter {
  private readonly inflight: Promise<void>[] = [];
  private readonly maxInFlight: number;
  private readonly slice: number;
  private readonly idleMs: number;
  /** The buffer from take() not yet written. */
  private current: Buffer | undefined;
  /** Slices waiting for the socket, and whether one is being written. */
  private readonly queue: Array<{ part: Buffer; done: (err?: Error | null) => void }> = [];
  private writing = false;
  /** Writes the socket has called back. */
  private acked = 0;
  /** `acked` at the last idle check when a write was pending, else -1. */
  private mark = -1;
  private timer: NodeJS.Timeout | undefined;
  private idled = false;
  /** Aborts on close, so a wait for the pool cannot hand a buffer to a stream that is gone. */
  private readonly gone = new AbortController();
  /**
   * Rejects once `out` closes. Node drops the callback of a write made as the peer hangs up, so
   * a write's own promise could wait forever and hold its buffer; after 'close' libuv no longer
   * reads the buffers, so giving them back then is safe.
   */
  private readonly closed: Promise<never>;

  constructor(
    private readonly out: Writable,
    private readonly pool: BoundedBufferPool,
    opts: PooledWriterOptions = {},
  ) {
    this.maxInFlight = opts.maxInFlight ?? 3;
    this.slice = opts.slice ?? 256 * 1024;
    this.idleMs = opts.idleMs ?? 0;
    this.closed = new Promise<never>((_, reject) => {
      const gone = () => {
        clearInterval(this.timer);
        reject(this.idled ? new ClientIdleError(this.idleMs) : new Error('the stream closed'));
        this.gone.abort();
      };
      if (out.destroyed) gone();
      else out.once('close', gone);
    });
    this.closed.catch(noop);
  }

  /** Whether this writer cut its client for idling. */
  get cutIdle(): boolean {
    return this.idled;
  }

  /** A buffer to fill, once this stream has a slot free and the pool a buffer. */
  async take(): Promise<Buffer> {
    if (this.current) return this.current;
    while (this.inflight.length >= this.maxInFlight) await this.inflight.shift();
    this.current = await Promise.race([this.pool.acquire(this.gone.signal), this.closed]);
    return this.current;
  }

  /** Write `chunk` (a view of the buffer from take()); the buffer returns to the pool once written. */
  write(chunk: Buffer): void {
    const buf = this.current;
    if (!buf) throw new Error('write() without take()');
    this.current = undefined;
    const parts: Promise<void>[] = [];
    for (let off = 0; off < chunk.length; off += this.slice) parts.push(this.send(chunk.subarray(off, off + this.slice)));
    const done = Promise.race([Promise.all(parts), this.closed]).then(noop);
    done.catch(noop);
    this.inflight.push(done);
    void Promise.race([Promise.allSettled(parts), this.closed.catch(noop)]).then(() => this.pool.release(buf));
    this.watch();
  }

  /**
   * Queue `part` for the socket. Only one write is handed to it at a time: writes queued in the
   * stream would go out as one writev whose callbacks all fire only once the whole batch left,
   * and a slow client would show no progress for megabytes.
   */
  private send(part: Buffer): Promise<void> {
    const p = new Promise<void>((resolve, reject) => this.queue.push({ part, done: (err) => (err ? reject(err) : resolve()) }));
    p.catch(noop);
    this.kick();
    return p;
  }

  private kick(): void {
    if (this.writing) return;
    const next = this.queue.shift();
    if (!next) return;
    this.writing = true;
    this.out.write(next.part, (err) => {
      this.writing = false;
      this.acked++;
      next.done(err);
      if (!err) return this.kick();
      for (const q of this.queue.splice(0)) q.done(err);
    });
  }

  /** Wait for every write, then end `out`; rejects with the first failure. */
  async end(): Promise<void> {
    await Promise.all(this.inflight.splice(0));
    const ended = new Promise<void>((resolve, reject) => this.out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    await Promise.race([ended, this.closed]);
  }

  /** The stream is over, whichever way: stop watching and give back a buffer never written. */
  dispose(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.current) this.pool.release(this.current);
    this.current = undefined;
  }

  /**
   * One check per idle period, not a timer reset per write: a write still pending at two checks
   * in a row with no callback in between has waited at least idleMs.
   */
  private watch(): void {
    if (this.timer || this.idleMs <= 0 || this.out.destroyed) return;
    this.timer = setInterval(() => {
      const waiting = this.writing || this.queue.length > 0;
      if (waiting && this.mark === this.acked) {
        this.idled = true;
        this.out.destroy();
        return;
      }
      this.mark = waiting ? this.acked : -1;
    }, this.idleMs);
    this.timer.unref();
  }
}
