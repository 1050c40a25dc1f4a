import type { Writable } from 'node:stream';

/**
 * Writes file data to a socket through a few reused buffers: a buffer is handed out again only
 * after the socket has taken what was written from it. Memory stays at slots × size per
 * stream whatever the file size, and a slow reader holds the writer back instead of letting
 * data pile up. (Reading into a fresh buffer per chunk leaves garbage that dfdaemon's memory
 * limit cannot afford at gigabytes per second.)
 */
export class BufferRing {
  private readonly bufs: Buffer[];
  private readonly pending: Array<Promise<void> | undefined>;
  private i = 0;
  /**
   * Rejects once `out` closes. Node drops the callback of a write made in the moment between a
   * peer's hang-up and the response's 'close' (or after the peer's FIN ended the socket), so a
   * write's own promise could wait forever and hold its buffer, the file and the upload slot.
   * After 'close' libuv no longer reads the buffers, so settling there is safe.
   */
  private readonly closed: Promise<never>;

  constructor(
    private readonly out: Writable,
    slots: number,
    size: number,
    private readonly pool?: BufferPool,
  ) {
    this.bufs = Array.from({ length: slots }, () => pool?.get() ?? Buffer.allocUnsafeSlow(size));
    this.pending = new Array(slots);
    this.closed = new Promise<never>((_, reject) => {
      const gone = () => reject(new Error('the stream closed'));
      if (out.destroyed) gone();
      else out.once('close', gone);
    });
    this.closed.catch(() => undefined);
  }

  /** Give the buffers back to the pool once no write uses them any more. */
  async release(): Promise<void> {
    await Promise.allSettled(this.pending);
    for (const b of this.bufs) this.pool?.put(b);
  }

  /** The next free buffer, once the socket has taken its previous contents. */
  async take(): Promise<Buffer> {
    await this.pending[this.i];
    return this.bufs[this.i];
  }

  /** Write `chunk` (a view of the buffer from take()) and move to the next slot. */
  write(chunk: Buffer): void {
    const written = new Promise<void>((resolve, reject) => this.out.write(chunk, (err) => (err ? reject(err) : resolve())));
    const p = Promise.race([written, this.closed]);
    // A failure surfaces when the slot comes round or in flush(); never as unhandled.
    p.catch(() => undefined);
    this.pending[this.i] = p;
    this.i = (this.i + 1) % this.bufs.length;
  }

  /** Wait for every write; rejects with the first failure. */
  async flush(): Promise<void> {
    await Promise.all(this.pending);
  }

  /** Flush, then end the stream. */
  async end(): Promise<void> {
    await this.flush();
    const ended = new Promise<void>((resolve, reject) => this.out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    await Promise.race([ended, this.closed]);
  }
}

/** Free buffers of one size kept for reuse, up to `max`; short transfers (piece uploads) then allocate nothing. */
export class BufferPool {
  private readonly free: Buffer[] = [];

  constructor(
    readonly size: number,
    private readonly max: number,
  ) {}

  get(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  put(b: Buffer): void {
    if (b.length === this.size && this.free.length < this.max) this.free.push(b);
  }
}
