import type { IncomingMessage, ServerResponse } from 'node:http';
import { hangUpSignal } from '../../shared/http/hang-up.js';
import { IdleCut } from '../../shared/http/idle-cut.js';
import { replyText } from '../../shared/http/text-reply.js';
import { parseRange, WRAP_OVERHEAD, WRAP_TAIL, wrapHeader } from '../../shared/protocol/pieces.js';
import type { TokenBucket } from '../../shared/ratelimit/token-bucket.js';
import type { Logger } from '../../shared/log/index.js';
import { BufferPool, BufferRing } from '../../shared/io/buffer-ring.js';
import type { PieceProgress } from '../store/piece-progress.js';
import type { PieceStore } from '../store/piece-store.js';
import { defaultPiecePaths, type PiecePaths } from './piece-path.js';


/** Marks a piece sent while it still arrives here (cut-through): peers judge its pace apart. */
export const RELAY_HEADER = 'x-dragonfly-relay';
/** Read size for uploads: large enough for few syscalls, small enough for 16 at once. */
const CHUNK = 256 * 1024;
const buffers = new BufferPool(CHUNK, 32);

export interface UploaderOptions {
  store: PieceStore;
  log: Logger;
  /** Host-wide upload bandwidth, shared by every upload. */
  bucket?: TokenBucket;
  /** Uploads served at once; more get 503. The supernode's peerUpLimit normally keeps below it. */
  maxConcurrent?: number;
  /** An upload whose peer takes no bytes for this long is cut, freeing its slot (default 30 s). */
  idleMs?: number;
  onBytes?: (n: number) => void;
  /** An upload starts relaying a piece that is still arriving. */
  onRelay?: () => void;
  /** The names pieces are served under; the downloader must register with the same. */
  paths?: PiecePaths;
}

const UPLOAD_IDLE_MS = 30_000;
/** How long a request for a piece we lack waits for our own fetch of it to start. */
const RELAY_START_WAIT_MS = 2_000;

/** Uploader state: the options plus the uploads in flight. */
export interface Uploader extends UploaderOptions {
  paths: PiecePaths;
  active: number;
}

export function createUploader(o: UploaderOptions): Uploader {
  return { ...o, paths: o.paths ?? defaultPiecePaths(), active: 0 };
}

/**
 * GET /peer/file/<taskId>-<token> (piece-path.ts): Dragonfly's uploader contract. The Range is
 * in wrapped offsets; we rebuild the 4-byte header and 0x7f tail around the raw bytes, so the md5
 * matches the CDN's.
 * Only verified pieces of tasks in the store are served whole; a piece still arriving is relayed
 * as it is written, and completed only once it verified here.
 */
export async function handleUpload(req: IncomingMessage, res: ServerResponse, o: Uploader): Promise<void> {
  const m = /^\/peer\/file\/([A-Za-z0-9._-]{1,200})$/.exec((req.url ?? '').split('?')[0]);
  if (!m) return replyText(res, 404, 'not found');
  // A name without our token gets the very answer of an unknown task: which tasks are here is
  // no one's business but the supernodes'.
  const taskId = o.paths.taskOf(m[1]);
  const found = taskId === undefined ? undefined : o.store.get(taskId);
  if (!found) return replyText(res, 404, 'no such task');
  const tf = found;
  const r = parseRange(String(req.headers.range ?? ''));
  const pieceNum = Number(req.headers.piecenum);
  const pieceSize = Number(req.headers.piecesize);
  if (!r || r.end <= r.start || !Number.isInteger(pieceNum) || pieceNum < 0 || pieceSize !== tf.layout.pieceSize) {
    return replyText(res, 400, 'bad range, pieceNum or pieceSize');
  }
  const start = r.start - pieceNum * WRAP_OVERHEAD;
  const fileLength = tf.layout.fileLength;
  // A stock supernode names every piece by its full size, the short last one too; like the
  // stock uploader (and RFC 7233 for an end past EOF), the end is clamped to the data there is.
  // A start past the data is still unsatisfiable (an empty file's one piece starts at 0).
  const contentLen = Math.min(r.end - r.start + 1 - WRAP_OVERHEAD, fileLength - start);
  if (contentLen < 0 || start < 0 || start > fileLength || (start === fileLength && fileLength > 0)) return replyText(res, 416, 'range not satisfiable');
  const length = contentLen + WRAP_OVERHEAD;
  const first = Math.floor(start / tf.layout.contentSize);
  const last = Math.floor((start + Math.max(contentLen, 1) - 1) / tf.layout.contentSize);
  const signal = hangUpSignal(res);
  // A whole piece this peer is still receiving is relayed as it arrives (cut-through).
  let relay: PieceProgress | undefined;
  for (let n = first; n <= last; n++) {
    if (tf.has(n)) continue;
    const piece = tf.layout.piece(n);
    const whole = first === last && start === piece.rawStart && contentLen === piece.contentLen;
    // A failed task file gets no new fetch, so nothing is worth waiting for.
    if (whole && !tf.failure) await tf.arrival(n, RELAY_START_WAIT_MS, signal);
    relay = whole && !tf.has(n) ? tf.receiving(n) : undefined;
    if (!relay && !tf.has(n)) return replyText(res, 404, `piece ${n} is not here`);
  }

  if (o.active >= (o.maxConcurrent ?? Infinity)) return replyText(res, 503, 'too many uploads', { 'retry-after': '1' });
  // A relayed piece comes at its upstream's pace: the fetcher must not take that for ours.
  res.writeHead(206, { 'content-type': 'application/octet-stream', 'content-length': length, ...(relay ? { [RELAY_HEADER]: '1' } : {}) });
  o.active++;
  tf.busy++;
  if (relay) {
    relay.readers++;
    o.onRelay?.();
  }
  // A stalled peer would also hold an upload slot and keep the file from eviction.
  const idle = new IdleCut(res, o.idleMs ?? UPLOAD_IDLE_MS);
  const ring = new BufferRing(res, 2, CHUNK, buffers);
  try {
    const send = async (chunk: Buffer) => {
      if (o.bucket) await idle.take(o.bucket, chunk.length, signal);
      o.onBytes?.(chunk.length);
      ring.write(chunk);
    };
    await send(wrapHeader(contentLen, pieceSize));
    for (let pos = start, end = start + contentLen; pos < end; ) {
      if (relay?.state === 'failed') throw new Error('the relayed fetch failed');
      const ready = relay ? Math.min(end, start + relay.written) : end;
      if (pos >= ready) {
        await relay!.change(signal);
        continue;
      }
      const buf = await ring.take();
      const got = await tf.readAt(buf.subarray(0, Math.min(CHUNK, ready - pos)), pos);
      if (got <= 0) throw new Error(`short read at ${pos} of ${tf.path}`);
      signal.throwIfAborted();
      await send(buf.subarray(0, got));
      pos += got;
    }
    // The last byte goes only once the piece checked out here, so a downstream never completes
    // a piece from a relay that found it bad.
    await relay?.settled(signal);
    if (relay && relay.state !== 'done') throw new Error('the relayed fetch failed');
    await send(Buffer.from([WRAP_TAIL]));
    await ring.end();
  } catch (err) {
    o.log.debug({ taskId: tf.taskId, err: (err as Error).message }, 'upload aborted');
    res.destroy();
  } finally {
    idle.clear();
    o.active--;
    tf.busy--;
    if (relay) relay.readers--;
    tf.touch();
    await ring.release();
  }
}
