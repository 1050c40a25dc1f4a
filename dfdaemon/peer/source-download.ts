import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Layout, pieceSizeFor } from '../../shared/protocol/pieces.js';
import { contentRange } from '../../shared/http/client.js';
import type { TokenBucket } from '../../shared/ratelimit/token-bucket.js';
import { localStorageError } from '../store/disk-error.js';
import type { TaskFile } from '../store/task-file.js';
import { bodyIdleTimer, fillFromSource, missingRuns, openOrigin, type SourceAnswer } from './back-source.js';
import type { DiskRoom } from './disk-room.js';
import { ShuttingDown, type DownloaderOptions, type DownloadRequest, type Started } from './download-types.js';

/** What the origin answered when it refused a direct fetch; the proxy relays it. */
export class OriginRefused extends Error {
  constructor(readonly status: number) {
    super(`origin answered ${status}`);
  }
}

/** The Downloader's paths to the origin: a whole task fetched there, or the rest of one. */
export class SourceDownloads {
  constructor(
    private readonly o: Pick<DownloaderOptions, 'store' | 'counters' | 'notbs' | 'sourceIdleMs'>,
    private readonly disk: DiskRoom,
    /** The downloader's stop signal. */
    private readonly signal: AbortSignal,
  ) {}

  async fromSource(req: DownloadRequest, id: string, bucket: TokenBucket, directed = false): Promise<Started> {
    if (this.o.notbs && !directed) throw new Error('no supernode answered and back-source is disabled');
    let src = await openOrigin(req.url, req.headers, { insecure: req.insecure, ca: req.ca, signal: this.signal });
    // A request with its own Range (dfget --header 'Range: ...', a ranged task) gets a 206: its
    // body is the whole content of this task.
    if (src.status === 206 && rangeOf(req.headers) !== undefined) src = { ...src, status: 200, length: partLength(src) };
    if (src.status !== 200 || (src.length < 0 && req.needLength)) {
      src.body.resume();
      throw new OriginRefused(src.status);
    }
    if (src.length < 0) return this.fromSourceUnsized(src, id, bucket);
    let tf: TaskFile;
    try {
      tf = await this.disk.open(id, new Layout(src.length, pieceSizeFor(src.length)));
    } catch (err) {
      src.body.destroy();
      throw err;
    }
    const done = fillFromSource(tf, src, 0, { bucket, signal: this.signal, idleMs: this.o.sourceIdleMs, onBytes: (n) => this.o.counters?.sourceBytes(n) });
    done.catch((err: Error) => this.disk.failed(tf, err));
    return { tf, via: 'source', done };
  }

  /**
   * An origin that does not say its length (chunked): the layout of a task file depends on it,
   * so the body goes whole into a file of the store first, which becomes the complete task file
   * at its end. Stock dfget's back-source copies such a body the same way.
   */
  private async fromSourceUnsized(src: SourceAnswer, id: string, bucket: TokenBucket): Promise<Started> {
    let part: string;
    try {
      part = await this.o.store.partPath(id);
    } catch (err) {
      src.body.destroy();
      throw err;
    }
    let bytes = 0;
    // As in fillFromSource: a stalled body fails the download instead of holding dfget for good.
    const idle = bodyIdleTimer(src.body, this.o.sourceIdleMs);
    const count = new Transform({
      transform: (chunk: Buffer, _e, cb) => {
        idle.disarm();
        bytes += chunk.length;
        this.o.counters?.sourceBytes(chunk.length);
        const pass = () => {
          idle.arm();
          cb(null, chunk);
        };
        if (bucket.unlimited) return pass();
        bucket.take(chunk.length, this.signal).then(pass, cb);
      },
    });
    idle.arm();
    try {
      await pipeline(src.body, count, createWriteStream(part), { signal: this.signal });
      idle.disarm();
      const tf = await this.o.store.adopt(id, new Layout(bytes, pieceSizeFor(bytes)), part);
      return { tf, via: 'source', done: Promise.resolve() };
    } catch (err) {
      idle.disarm();
      await rm(part, { force: true });
      const local = localStorageError(err, `writing the body of ${id}`);
      if (local) this.disk.noteDiskFailure(local, bytes);
      throw this.signal.aborted ? new ShuttingDown() : (local ?? err);
    }
  }

  async completeFromSource(req: DownloadRequest, tf: TaskFile, bucket: TokenBucket): Promise<void> {
    if (this.o.notbs) throw new Error('p2p failed and back-source is disabled');
    const { layout } = tf;
    // Only the runs still missing: pieces peers already gave us are not asked of the origin again.
    for (const [first, end] of missingRuns(tf)) {
      // An answer that ran past its range may have filled this run already.
      if (!hasGap(tf, first, end)) continue;
      const from = layout.piece(first).rawStart;
      const to = end < layout.count ? layout.piece(end).rawStart : undefined;
      const src = await openOrigin(req.url, req.headers, { from, to, insecure: req.insecure, ca: req.ca, signal: this.signal });
      if (src.status !== 200 && src.status !== 206) {
        src.body.resume();
        throw new OriginRefused(src.status);
      }
      await fillFromSource(tf, src, from, { bucket, signal: this.signal, idleMs: this.o.sourceIdleMs, onBytes: (n) => this.o.counters?.sourceBytes(n) }, to);
      // An origin that ignores Range sent the whole body, and every piece is in.
      if (src.status === 200) return;
    }
  }
}

/**
 * The request's own Range header. Only this spelling makes a ranged task ID (as in Dragonfly),
 * so only it may turn a 206 into the task's content.
 */
function rangeOf(headers: Record<string, string>): string | undefined {
  return headers['Range'];
}

/** The body length of a 206: its Content-Length, else what its Content-Range spans; -1 if neither. */
function partLength(src: SourceAnswer): number {
  const cl = src.headers['content-length'];
  if (typeof cl === 'string' && /^\d+$/.test(cl)) return Number(cl);
  const cr = contentRange(src.headers);
  return cr ? cr.end - cr.start + 1 : -1;
}

function hasGap(tf: TaskFile, first: number, end: number): boolean {
  for (let n = first; n < end; n++) if (!tf.has(n)) return true;
  return false;
}
