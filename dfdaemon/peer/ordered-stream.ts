import { createHash, type Hash } from 'node:crypto';
import { Readable, type Writable } from 'node:stream';
import { digestMismatch } from '../../shared/errors.js';
import { BufferRing } from '../../shared/io/buffer-ring.js';
import type { TaskFile } from '../store/task-file.js';

const CHUNK = 1024 * 1024;
/** Buffers a pump cycles through: one being filled while the others drain to the socket. */
const RING = 3;

export interface StreamOptions {
  expectSha256?: string;
  signal?: AbortSignal;
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
 * Buffers are reused (BufferRing), so a 1 GiB stream allocates 3 MiB.
 */
export async function pumpBlob(tf: TaskFile, out: Writable, opts: StreamOptions = {}): Promise<void> {
  const release = hold(tf);
  const reader = new OrderedReader(tf, opts);
  const ring = new BufferRing(out, RING, CHUNK);
  try {
    for (;;) {
      const chunk = await reader.next(await ring.take());
      if (!chunk) break;
      opts.signal?.throwIfAborted();
      ring.write(chunk);
    }
    await ring.end();
  } finally {
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
