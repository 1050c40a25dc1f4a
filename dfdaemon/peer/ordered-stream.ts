import { createHash, type Hash } from 'node:crypto';
import { Readable, type Writable } from 'node:stream';
import { digestMismatch, isDfError } from '../../shared/errors.js';
import { BoundedBufferPool } from '../../shared/io/bounded-pool.js';
import { ClientIdleError, PooledWriter } from '../../shared/io/pooled-writer.js';
import type { TaskFile } from '../store/task-file.js';

/** Read size of a stream: large enough for few syscalls at disk speed. Blob pools hold buffers of this size. */
export const BLOB_CHUNK = 1024 * 1024;
const CHUNK = BLOB_CHUNK;
/** Buffers a pump keeps in flight: one being filled while the others drain to the socket. */
const IN_FLIGHT = 3;

export interface StreamOptions {
  expectSha256?: string;
  signal?: AbortSignal;
}

export interface PumpOptions extends StreamOptions {
  /**
   * Where the pump borrows its buffers (BLOB_CHUNK each): shared by all of a server's streams,
   * so that their memory is bounded. Without one the stream gets a pool of its own.
   */
  pool?: BoundedBufferPool;
  /** Cut `out` when its client takes no bytes for this long while some wait (0: never). */
  idleMs?: number;
}

/**
 * Reads the blob in order, as its pieces become verified, whatever order they arrive in, into
 * buffers the caller supplies. The whole blob's sha256 is checked before the last read
 * returns; a mismatch throws instead, so a consumer never completes a corrupt body. A file
 * that passed the check once is not hashed again.
 */
class OrderedReader {
  private pos = 0;
  private readonly hash: Hash | undefined;
  /** Set once the digest was compared: null when it matched, else the mismatch. */
  private verdict: Error | null | undefined;

  constructor(
    private readonly tf: TaskFile,
    private readonly opts: StreamOptions,
  ) {
    this.hash = opts.expectSha256 !== undefined && !tf.verified ? createHash('sha256') : undefined;
  }

  /**
   * Wait until the next bytes can be read: true, or false at the end (where a digest mismatch
   * throws). A pump borrows a buffer only after this, so one waiting for pieces holds none.
   */
  async ready(): Promise<boolean> {
    const { layout } = this.tf;
    if (this.pos >= layout.fileLength) {
      this.finish();
      return false;
    }
    await this.tf.waitPiece(Math.floor(this.pos / layout.contentSize), this.opts.signal);
    return true;
  }

  /** The next bytes into `buf`, or undefined at the end. The read that reaches the end throws
   * instead of returning when the digest does not match. */
  async next(buf: Buffer): Promise<Buffer | undefined> {
    const { layout } = this.tf;
    if (this.pos >= layout.fileLength) {
      this.finish();
      return undefined;
    }
    const n = Math.floor(this.pos / layout.contentSize);
    await this.tf.waitPiece(n, this.opts.signal);
    // Read up to the end of the verified run of pieces, not only this one.
    let m = n + 1;
    while (m < layout.count && this.tf.has(m) && (m - n) * layout.contentSize < buf.length) m++;
    const end = Math.min(layout.fileLength, m * layout.contentSize, this.pos + buf.length);
    const got = await this.tf.readAt(buf.subarray(0, end - this.pos), this.pos);
    if (got <= 0) throw new Error(`short read at ${this.pos} of ${this.tf.path}`);
    const chunk = buf.subarray(0, got);
    this.hash?.update(chunk);
    this.pos += got;
    // Checked before the last bytes go out, not on the call after: once a consumer has every
    // byte of a Content-Length body, aborting the connection no longer tells it anything.
    if (this.pos >= layout.fileLength) this.finish();
    return chunk;
  }

  private finish(): void {
    if (!this.hash) return;
    if (this.verdict === undefined) {
      const actual = this.hash.digest('hex');
      this.verdict = actual === this.opts.expectSha256 ? null : digestMismatch(`blob ${this.tf.taskId}`, `sha256:${this.opts.expectSha256}`, `sha256:${actual}`);
      if (!this.verdict) this.tf.verified = true;
    }
    if (this.verdict) throw this.verdict;
  }
}

/** Hold the file busy (not evictable) until `release` is called once. */
function hold(tf: TaskFile): () => void {
  tf.busy++;
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    tf.busy--;
    tf.touch();
  };
}

/**
 * Stream the blob into `out` (an HTTP response) and end it, or reject and leave it unended.
 * Buffers are borrowed from `opts.pool`, at most 3 at a time, so a 1 GiB stream allocates
 * nothing and a thousand streams no more than the pool. A client that stops reading is cut
 * after opts.idleMs (the rejection is then a ClientIdleError).
 */
export async function pumpBlob(tf: TaskFile, out: Writable, opts: PumpOptions = {}): Promise<void> {
  const release = hold(tf);
  const reader = new OrderedReader(tf, opts);
  const pool = opts.pool ?? new BoundedBufferPool(CHUNK, IN_FLIGHT);
  const writer = new PooledWriter(out, pool, { maxInFlight: IN_FLIGHT, idleMs: opts.idleMs });
  try {
    while (await reader.ready()) {
      const chunk = await reader.next(await writer.take());
      if (!chunk) break;
      opts.signal?.throwIfAborted();
      writer.write(chunk);
    }
    await writer.end();
  } catch (err) {
    // The cut shows up as whatever was waiting when the socket closed (a piece, a write).
    if (writer.cutIdle && !isDfError(err, 'DIGEST_MISMATCH')) throw new ClientIdleError(opts.idleMs ?? 0);
    throw err;
  } finally {
    writer.dispose();
    release();
  }
}

/**
 * The blob as a Readable (dfget writes it to a file). It holds the file busy from creation
 * until it closes, so the cache cannot evict it between the caller choosing it and the first
 * read.
 */
export function orderedStream(tf: TaskFile, opts: StreamOptions = {}): Readable {
  const release = hold(tf);
  const reader = new OrderedReader(tf, opts);
  async function* gen() {
    for (;;) {
      const chunk = await reader.next(Buffer.allocUnsafe(CHUNK));
      if (!chunk) return;
      yield chunk;
    }
  }
  const stream = Readable.from(gen(), { objectMode: false, highWaterMark: CHUNK });
  stream.once('close', release);
  return stream;
}
