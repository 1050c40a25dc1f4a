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

/** GET the origin directly, optionally from a raw offset, and up to (not including) `to`. */
export async function openOrigin(
  url: string,
  headers: Record<string, string>,
  opts: { from?: number; to?: number; insecure?: boolean; ca?: string[]; signal?: AbortSignal },
): Promise<SourceAnswer> {
  const h = { ...headers };
  const from = opts.from ?? 0;
  if (opts.to !== undefined) h.range = `bytes=${from}-${opts.to - 1}`;
  else if (from > 0) h.range = `bytes=${from}-`;
  const res = await getFollowing(url, {
    headers: h,
    signal: opts.signal,
    timeoutMs: 30_000,
    agentFor: (u) => agentFor(u, opts.insecure ?? false, opts.ca ?? []),
  });
  return { status: res.status, length: entityLength(res), headers: res.headers, body: res.body };
}

/** Ranges asked of the origin at most per fallback: past that, the smallest gaps are fetched too. */
export const MAX_SOURCE_RANGES = 8;

/**
 * The runs of pieces a task file lacks, as [first, end) piece numbers, at most `max` of them:
 * the smallest gaps between runs are merged first, as refetching a few pieces we have costs
 * less than another request to the origin.
 */
export function missingRuns(tf: { has(n: number): boolean; layout: { count: number } }, max = MAX_SOURCE_RANGES): [number, number][] {
  const runs: [number, number][] = [];
  for (let n = 0; n < tf.layout.count; n++) {
    if (tf.has(n)) continue;
    const last = runs[runs.length - 1];
    if (last && last[1] === n) last[1] = n + 1;
    else runs.push([n, n + 1]);
  }
  while (runs.length > Math.max(1, max)) {
    let at = 1;
    for (let i = 2; i < runs.length; i++) if (runs[i][0] - runs[i - 1][1] < runs[at][0] - runs[at - 1][1]) at = i;
    runs[at - 1][1] = runs[at][1];
    runs.splice(at, 1);
  }
  return runs;
}

/**
 * Fill the pieces a task file still lacks straight from the origin, from raw offset `from` (a
 * piece start) up to raw offset `to` (a piece end; default the end of the file). Pieces already
 * verified are skipped, so this completes a P2P download that failed half-way as well as a
 * download that never reached a supernode. Source pieces carry no md5; the whole-blob sha256
 * check at the end of the stream covers them. A 200 is the whole body, walked from piece 0.
 */
export async function fillFromSource(tf: TaskFile, src: SourceAnswer, from: number, opts: FillOptions, to = tf.layout.fileLength): Promise<void> {
  const { layout } = tf;
  checkAnswer(layout.fileLength, src, from, to);
  // An origin that ignores Range sends everything from 0: then walk (and skip) from piece 0.
  const cut = { num: src.status === 206 ? Math.floor(from / layout.contentSize) : 0, fill: 0, buf: Buffer.allocUnsafe(layout.contentSize) };
  // The head timeout is over once headers arrive: without this, a stalled socket hangs the
  // task and every request joined to it. Armed only while waiting on the origin, so a slow
  // rate limit or disk is not taken for a stall.
  const idle = bodyIdleTimer(src.body, opts.idleMs);
  // A ranged answer is read only as far as was asked: some caches answer `bytes=a-b` with
  // everything from a to the end, and reading that to the end for each missing run would fetch
  // the rest of the blob once per run.
  const ranged = src.status === 206 && to < layout.fileLength;
  const end = ranged ? Math.ceil(to / layout.contentSize) : layout.count;
  idle.arm();
  try {
    for await (const chunk of src.body as AsyncIterable<Buffer>) {
      idle.disarm();
      await take(tf, chunk, cut, opts);
      if (ranged && cut.num >= end) break;
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
  // A 206 may run past what was asked (checkAnswer allows it); it must cover the asked pieces.
  if (cut.num < end) throw new Error(`origin stopped at piece ${cut.num} of ${end}`);
}

/**
 * Refuse an answer whose bytes would land at the wrong offsets: a 206 must start where we asked,
 * cover at least what we asked, and describe a file of the task's length (a cache may answer
 * `Range: bytes=N-` from 0). A 200 is the whole body, which fillFromSource walks from piece 0,
 * so only its length must agree.
 */
function checkAnswer(fileLength: number, src: SourceAnswer, from: number, to: number): void {
  if (src.status === 206) {
    const cr = contentRange(src.headers);
    if (!cr || cr.start !== from || cr.end < to - 1 || cr.total !== fileLength) {
      src.body.resume();
      throw new Error(`origin answered bytes=${from}-${to < fileLength ? to - 1 : ''} with 206 Content-Range '${String(src.headers['content-range'] ?? '')}', expected bytes ${from}-${to - 1}/${fileLength}`);
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
