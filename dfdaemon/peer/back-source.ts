import type { Readable } from 'node:stream';
import type { TokenBucket } from '../../shared/ratelimit/token-bucket.js';
import type { TaskFile } from '../store/task-file.js';
import { agentFor } from '../../shared/http/agents.js';
import { entityLength, getFollowing } from '../../shared/http/client.js';

export interface SourceAnswer {
  status: number;
  length: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

/** GET the origin directly, optionally from a raw offset. */
export async function openOrigin(
  url: string,
  headers: Record<string, string>,
  opts: { from?: number; insecure?: boolean; ca?: string[]; signal?: AbortSignal },
): Promise<SourceAnswer> {
  const h = { ...headers };
  if (opts.from && opts.from > 0) h.range = `bytes=${opts.from}-`;
  const res = await getFollowing(url, {
    headers: h,
    signal: opts.signal,
    timeoutMs: 30_000,
    agentFor: (u) => agentFor(u, opts.insecure ?? false, opts.ca ?? []),
  });
  return { status: res.status, length: entityLength(res), headers: res.headers, body: res.body };
}

/**
 * Fill the pieces a task file still lacks straight from the origin, starting at the first
 * missing piece. Pieces already verified are skipped, so this completes a P2P download that
 * failed half-way as well as a download that never reached a supernode. Source pieces carry no
 * md5; the whole-blob sha256 check at the end of the stream covers them.
 */
export async function fillFromSource(
  tf: TaskFile,
  src: SourceAnswer,
  from: number,
  opts: { bucket?: TokenBucket; signal?: AbortSignal; onBytes?: (n: number) => void },
): Promise<void> {
  const { layout } = tf;
  // An origin that ignores Range sends everything from 0: then walk (and skip) from piece 0.
  let num = src.status === 206 ? Math.floor(from / layout.contentSize) : 0;
  const buf = Buffer.allocUnsafe(layout.contentSize);
  let fill = 0;
  for await (const chunk of src.body as AsyncIterable<Buffer>) {
    if (opts.bucket) await opts.bucket.take(chunk.length, opts.signal);
    opts.onBytes?.(chunk.length);
    let off = 0;
    while (off < chunk.length) {
      if (num >= layout.count) throw new Error(`origin sent more than ${layout.fileLength} bytes`);
      const p = layout.piece(num);
      const n = Math.min(p.contentLen - fill, chunk.length - off);
      chunk.copy(buf, fill, off, off + n);
      fill += n;
      off += n;
      if (fill === p.contentLen) {
        if (!tf.has(num)) {
          await tf.writeAt(buf.subarray(0, fill), p.rawStart);
          tf.markDone(num);
        }
        num++;
        fill = 0;
      }
    }
  }
  if (num !== layout.count) throw new Error(`origin stopped at piece ${num} of ${layout.count}`);
}
