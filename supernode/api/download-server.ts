import { open, type FileHandle } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { hangUpSignal } from '../../shared/http/hang-up.js';
import { IdleCut } from '../../shared/http/idle-cut.js';
import { replyText } from '../../shared/http/text-reply.js';
import { parseRange } from '../../shared/protocol/pieces.js';
import { BufferPool, BufferRing } from '../../shared/io/buffer-ring.js';
import type { TokenBucket } from '../../shared/ratelimit/token-bucket.js';
import type { Logger } from '../../shared/log/index.js';
import type { Cdn } from '../cdn/cdn.js';
import type { CdnTask } from '../cdn/cdn-task.js';
import type { DownloadTokens } from '../cdn/download-token.js';

/** Read size per write: few syscalls, and a few in flight per upload stay small. */
const CHUNK = 256 * 1024;
const buffers = new BufferPool(CHUNK, 32);
const IDLE_MS = 30_000;

/**
 * The download port. Dragonfly 1.x needed nginx here; we serve the same URL shape
 * (/download/<id[0:3]>/<id>) and the same wrapped byte ranges, and only ranges made of pieces
 * the CDN has finished writing, so a half-written piece is never served. A path without the
 * task's token (handed out only to registered peers) is answered like an unknown task: the ID
 * alone is computable from the URL.
 */
export function createDownloadServer(opts: {
  cdn: Cdn;
  log: Logger;
  tokens: DownloadTokens;
  bucket?: TokenBucket;
  onServed?: (bytes: number) => void;
  /** A finished task's file is gone from disk (removed by hand, lost disk): forget the task. */
  onLost?: (task: CdnTask) => void;
  /** A peer that takes no bytes for this long is cut, freeing the file and buffers (default 30 s). */
  idleMs?: number;
}): Server {
  const { cdn, log } = opts;
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return replyText(res, 405, 'method not allowed');
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const m = /^\/download\/([0-9a-f]{3})\/([0-9a-f]{64})$/.exec(q < 0 ? url : url.slice(0, q));
    if (!m || !m[2].startsWith(m[1])) return replyText(res, 404, 'not found');
    if (!opts.tokens.check(m[2], new URLSearchParams(q < 0 ? '' : url.slice(q + 1)).get('token'))) return replyText(res, 404, 'task not found');
    const task = cdn.get(m[2]);
    if (!task || !task.layout) return replyText(res, 404, 'task not found');
    const layout = task.layout;
    const total = layout.fileLength + layout.count * 5;
    const r = parseRange(req.headers.range ?? '');
    if (!r) return replyText(res, 416, 'a wrapped byte range is required');
    const first = Math.floor(r.start / layout.pieceSize);
    const last = Math.floor(r.end / layout.pieceSize);
    if (last >= layout.count || r.end > layout.piece(last).end) return replyText(res, 416, 'range not satisfiable');
    for (let n = first; n <= last; n++) if (!task.hasPiece(n)) return replyText(res, 404, `piece ${n} is not ready`);
    const len = r.end - r.start + 1;
    // Open before answering: the file moves from .part to its final name when the task
    // completes, which is exactly when its last piece is first asked for.
    const fh = await openTaskFile(() => task.path);
    if (!fh) {
      // Without this the CDN would keep offering pieces of a file it no longer has, and every
      // peer would fail on them until the task expired (Dragonfly GCs the task here too).
      if (task.status === 'SUCCESS') opts.onLost?.(task);
      return replyText(res, 404, 'task file not found');
    }
    res.writeHead(206, {
      'content-type': 'application/octet-stream',
      'content-length': len,
      'content-range': `bytes ${r.start}-${r.end}/${total}`,
    });
    if (req.method === 'HEAD') {
      await fh.close();
      return res.end();
    }
    const signal = hangUpSignal(res);
    // Reused buffers and one read per write: the stream pipeline this replaced allocated a
    // buffer per 64 KiB read and passed each through two stream stages, and its garbage
    // collection took a quarter of the supernode's CPU while it served a warm blob.
    const ring = new BufferRing(res, 2, CHUNK, buffers);
    const idle = new IdleCut(res, opts.idleMs ?? IDLE_MS);
    let pos = r.start;
    try {
      while (pos <= r.end) {
        const buf = await ring.take();
        const { bytesRead } = await fh.read(buf, 0, Math.min(CHUNK, r.end + 1 - pos), pos);
        if (bytesRead <= 0) throw new Error(`short read at ${pos} of ${task.path}`);
        if (opts.bucket && !opts.bucket.unlimited) await idle.take(opts.bucket, bytesRead, signal);
        signal.throwIfAborted();
        ring.write(buf.subarray(0, bytesRead));
        pos += bytesRead;
      }
      await ring.end();
    } catch (err) {
      log.debug({ err: (err as Error).message, taskId: task.taskId }, 'piece upload aborted');
      // Headers are out: a short body must end the connection, not leave the client waiting.
      res.destroy();
    } finally {
      idle.clear();
      await ring.release();
      await fh.close();
    }
    opts.onServed?.(pos - r.start);
  };
  return createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      log.error({ err }, 'download server error');
      if (!res.headersSent) replyText(res, 500, 'internal error');
      else res.destroy();
    });
  });
}

/** Open a task's data file under whichever name it has right now. */
async function openTaskFile(path: () => string): Promise<FileHandle | undefined> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const p = path();
    const other = p.endsWith('.part') ? p.slice(0, -5) : `${p}.part`;
    for (const candidate of [p, other]) {
      try {
        return await open(candidate, 'r');
      } catch (err) {
        // ENOENT: renamed under us, try the other name. Anything else (EMFILE under load,
        // EACCES) is not a lost file and must not drop the task: it becomes a 500.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    await new Promise((r) => setImmediate(r));
  }
  return undefined;
}
