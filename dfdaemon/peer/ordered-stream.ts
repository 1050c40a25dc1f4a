import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { digestMismatch } from '../../shared/errors.js';
import type { TaskFile } from '../store/task-file.js';

const CHUNK = 256 * 1024;

/**
 * The blob in order, as its pieces become verified, whatever order they arrive in. The reader
 * pulls, so a slow client slows only this stream. The whole blob's sha256 is checked before
 * the stream ends; on a mismatch the stream errors instead of ending, so the client never sees
 * a complete, corrupt body. A file that passed that check once is not hashed again.
 *
 * The file counts as busy from creation until the stream closes, so the cache cannot evict it
 * between the caller choosing it and the first read.
 */
export function orderedStream(tf: TaskFile, opts: { expectSha256?: string; signal?: AbortSignal } = {}): Readable {
  const { layout } = tf;
  const check = opts.expectSha256 !== undefined && !tf.verified;
  async function* gen() {
    const hash = check ? createHash('sha256') : undefined;
    let pos = 0;
    while (pos < layout.fileLength) {
      const n = Math.floor(pos / layout.contentSize);
      await tf.waitPiece(n, opts.signal);
      const end = Math.min(layout.fileLength, (n + 1) * layout.contentSize);
      while (pos < end) {
        const buf = Buffer.allocUnsafe(Math.min(CHUNK, end - pos));
        const got = await tf.readAt(buf, pos);
        if (got <= 0) throw new Error(`short read at ${pos} of ${tf.path}`);
        const chunk = got === buf.length ? buf : buf.subarray(0, got);
        hash?.update(chunk);
        pos += got;
        yield chunk;
      }
    }
    if (hash) {
      const actual = hash.digest('hex');
      if (actual !== opts.expectSha256) throw digestMismatch(`blob ${tf.taskId}`, `sha256:${opts.expectSha256}`, `sha256:${actual}`);
      tf.verified = true;
    }
  }
  tf.busy++;
  const stream = Readable.from(gen(), { objectMode: false, highWaterMark: CHUNK });
  stream.once('close', () => {
    tf.busy--;
    tf.touch();
  });
  return stream;
}
