import type { Readable } from 'node:stream';
import { DfError } from '../../shared/errors.js';
import type { TokenBucket } from '../../shared/ratelimit/token-bucket.js';
import type { TaskFile } from '../store/task-file.js';
import { agentFor } from '../../shared/http/agents.js';
import { contentRange, entityLength, getFollowing } from '../../shared/http/client.js';

/** As the supernode's CDN: an origin silent this long mid-body has stalled, and the task fails. */
export const BODY_IDLE_MS = 60_000;

export interface FillOptions {
  bucket?: TokenBucket;
  signal?: AbortSignal;
  onBytes?: (n: number) => void;
  /** Fail when the origin sends no body bytes for this long (default BODY_IDLE_MS). */
  idleMs?: number;
}

/**
 * Fails `body` with SOURCE_TIMEOUT when it stays armed `idleMs` (default BODY_IDLE_MS). Callers
 * arm it only while waiting on the origin, so a slow rate limit or disk is not taken for a stall.
 */
export function bodyIdleTimer(body: Readable, idleMs = BODY_IDLE_MS): { arm(): void; disarm(): void } {
  let timer: NodeJS.Timeout | undefined;
  return {
    arm() {
      clearTimeout(timer);
      timer = setTimeout(() => body.destroy(new DfError('SOURCE_TIMEOUT', `origin sent nothing for ${idleMs} ms mid-body`, { details: { timeoutMs: idleMs } })), idleMs);
    },
    disarm: () => clearTimeout(timer),
  };
}

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
export async function fillFromSource(tf: TaskFile, src: SourceAnswer, from: number, opts: FillOptions): Promise<void> {
  const { layout } = tf;
  checkAnswer(layout.fileLength, src, from);
  // An origin that ignores Range sends everything from 0: then walk (and skip) from piece 0.
  const cut = { num: src.status === 206 ? Math.floor(from / layout.contentSize) : 0, fill: 0, buf: Buffer.allocUnsafe(layout.contentSize) };
  // The head timeout is over once headers arrive: without this, a stalled socket hangs the
  // task and every request joined to it. Armed only while waiting on the origin, so a slow
  // rate limit or disk is not taken for a stall.
  const idle = bodyIdleTimer(src.body, opts.idleMs);
  idle.arm();
  try {
    for await (const chunk of src.body as AsyncIterable<Buffer>) {
      idle.disarm();
      await take(tf, chunk, cut, opts);
      idle.arm();
    }
  } finally {
    idle.disarm();
  }
  // An empty blob is one empty piece, and no chunk ever comes to complete it.
  if (layout.fileLength === 0 && cut.num === 0) {
    tf.markDone(0);
    cut.num = 1;
  }
  if (cut.num !== layout.count) throw new Error(`origin stopped at piece ${cut.num} of ${layout.count}`);
}

/**
 * Refuse an answer whose bytes would land at the wrong offsets: a 206 must start where we asked
 * and describe a file of the task's length (a cache may answer `Range: bytes=N-` from 0). A 200
 * is the whole body, which fillFromSource walks from piece 0, so only its length must agree.
 */
function checkAnswer(fileLength: number, src: SourceAnswer, from: number): void {
  if (src.status === 206) {
    const cr = contentRange(src.headers);
    if (!cr || cr.start !== from || cr.total !== fileLength) {
      src.body.resume();
      throw new Error(`origin answered bytes=${from}- with 206 Content-Range '${String(src.headers['content-range'] ?? '')}', expected bytes ${from}-${fileLength - 1}/${fileLength}`);
    }
  } else if (src.length >= 0 && src.length !== fileLength) {
    src.body.resume();
    throw new Error(`origin answered ${src.status} with ${src.length} bytes, expected ${fileLength}`);
  }
}

/** Cut one chunk into pieces, writing each piece the file still lacks as it fills. */
async function take(tf: TaskFile, chunk: Buffer, cut: { num: number; fill: number; buf: Buffer }, opts: FillOptions): Promise<void> {
  const { layout } = tf;
  if (opts.bucket) await opts.bucket.take(chunk.length, opts.signal);
  opts.onBytes?.(chunk.length);
  let off = 0;
  while (off < chunk.length) {
    if (cut.num >= layout.count) throw new Error(`origin sent more than ${layout.fileLength} bytes`);
    const p = layout.piece(cut.num);
    const n = Math.min(p.contentLen - cut.fill, chunk.length - off);
    chunk.copy(cut.buf, cut.fill, off, off + n);
    cut.fill += n;
    off += n;
    if (cut.fill === p.contentLen) {
      // A P2P fetch given up on just before back-source may still have a write in flight to
      // this piece; writing under it could leave its unverified bytes in a piece marked done.
      for (let running = tf.receiving(cut.num); running; running = tf.receiving(cut.num)) await running.settled(opts.signal);
      if (!tf.has(cut.num)) {
        await tf.writeAt(cut.buf.subarray(0, cut.fill), p.rawStart);
        tf.markDone(cut.num);
      }
      cut.num++;
      cut.fill = 0;
    }
  }
}
