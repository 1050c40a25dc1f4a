import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { digestMismatch } from '../../shared/errors.js';
import type { TaskFile } from '../store/task-file.js';

const CHUNK = 256 * 1024;

/**
 * The blob in order, as its pieces become verified, whatever order they arrive in. The reader
 * pulls, so a slow client slows only this stream. The whole blob's sha256 is checked before
 * the stream ends; on a mismatch the stream errors instead of ending, so the client never sees
 * a complete, corrupt body.
 */
export function orderedStream(tf: TaskFile, opts: { expectSha256?: string; signal?: AbortSignal } = {}): Readable {
  const { layout } = tf;
  async function* gen() {
    tf.busy++;
    try {
      const hash = createHash('sha256');
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
          hash.update(chunk);
          pos += got;
          yield chunk;
        }
      }
      const actual = hash.digest('hex');
      if (opts.expectSha256 && actual !== opts.expectSha256) {
        throw digestMismatch(`blob ${tf.taskId}`, `sha256:${opts.expectSha256}`, `sha256:${actual}`);
      }
    } finally {
      tf.busy--;
      tf.lastAccess = Date.now();
    }
  }
  return Readable.from(gen(), { objectMode: false, highWaterMark: CHUNK });
}
