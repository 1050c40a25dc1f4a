import { EventEmitter } from 'node:events';
import type { FileHandle } from 'node:fs/promises';
import type { Layout } from '../../shared/protocol/pieces.js';
import { localStorageError } from './disk-error.js';
import type { FileHandles } from './file-handles.js';
import { PieceProgress } from './piece-progress.js';

/**
 * One blob's raw bytes on local disk plus which pieces are verified. The streamer to Docker and
 * the uploader to other peers both read this file; a piece counts only after markDone, which
 * the downloader calls after the piece's digest checked out.
 */
export class TaskFile extends EventEmitter {
  private readonly done: Uint8Array;
  private doneCount = 0;
  failure: Error | undefined;
  /** Readers and uploads in progress; the store never evicts a busy file. */
  busy = 0;
  lastAccess: number;
  /** The whole blob matched its digest once; later local reads need not hash it again. */
  verified = false;
  /** The supernode this task is registered with, told when the file goes away. */
  node: string | undefined;
  /** Fetches in progress, newest per piece, for cut-through uploads. */
  private readonly arriving = new Map<number, PieceProgress>();

  constructor(
    readonly taskId: string,
    readonly layout: Layout,
    readonly path: string,
    /** The store's handle pool: the file is open only while the pool keeps it (or while used). */
    private readonly handles: FileHandles,
    private readonly now: () => number = Date.now,
  ) {
    super();
    this.setMaxListeners(0);
    this.done = new Uint8Array(layout.count);
    this.lastAccess = now();
  }

  touch(): void {
    this.lastAccess = this.now();
  }

  has(n: number): boolean {
    return this.done[n] === 1;
  }

  get complete(): boolean {
    return this.doneCount === this.layout.count;
  }

  get completedPieces(): number {
    return this.doneCount;
  }

  /** A fetch of piece n starts writing; the uploader may relay it until it ends. */
  startPiece(n: number): PieceProgress {
    const prog = new PieceProgress();
    this.arriving.set(n, prog);
    this.emit('start', n);
    return prog;
  }

  /**
   * Until piece n is here or being fetched, at most `ms`. The supernode names a peer as a relay
   * as it hands the peer the piece, so a downstream's request can overtake the relay's own start.
   */
  async arrival(n: number, ms: number, signal: AbortSignal): Promise<void> {
    if (this.has(n) || this.receiving(n)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.off('start', onEvent);
        this.off('piece', onEvent);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const onEvent = (m: number) => {
        if (m === n) done();
      };
      const timer = setTimeout(done, ms);
      this.on('start', onEvent);
      this.on('piece', onEvent);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  endPiece(n: number, prog: PieceProgress, ok: boolean): void {
    if (this.arriving.get(n) === prog) this.arriving.delete(n);
    prog.end(ok);
  }

  /** The fetch of piece n that is still writing, if any. */
  receiving(n: number): PieceProgress | undefined {
    const prog = this.arriving.get(n);
    return prog?.state === 'running' ? prog : undefined;
  }

  markDone(n: number): void {
    if (this.done[n] === 1) return;
    this.done[n] = 1;
    this.doneCount++;
    this.emit('piece', n);
    if (this.complete) this.emit('complete');
  }

  /** The download gave up: wake every waiter with the error. */
  fail(err: Error): void {
    if (this.complete || this.failure) return;
    this.failure = err;
    this.emit('failed', err);
  }

  /** Reopen for another attempt (e.g. back-source after P2P failed). */
  retry(): void {
    this.failure = undefined;
  }

  waitPiece(n: number, signal?: AbortSignal): Promise<void> {
    if (this.has(n)) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        this.off('piece', onPiece);
        this.off('failed', onFail);
        signal?.removeEventListener('abort', onAbort);
      };
      const onPiece = (m: number) => {
        if (m !== n) return;
        cleanup();
        resolve();
      };
      const onFail = (err: Error) => {
        cleanup();
        reject(err);
      };
      const onAbort = () => {
        cleanup();
        reject(signal!.reason as Error);
      };
      this.on('piece', onPiece);
      this.on('failed', onFail);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * A disk failure (ENOSPC, EDQUOT, EIO, EROFS, EACCES, or no descriptor left to reopen the file)
   * rejects with a LocalStorageError, so no caller takes it for a fault of wherever the bytes
   * came from.
   */
  writeAt(buf: Buffer, pos: number): Promise<void> {
    return this.handles.use(this, (fh) => writeAll(fh, buf, pos)).catch((err: unknown) => {
      throw localStorageError(err, `writing ${this.path}`) ?? err;
    });
  }

  /** Write buffers back to back from `pos` in one call when the kernel takes them all. */
  writev(bufs: Buffer[], pos: number): Promise<void> {
    return this.handles
      .use(this, async (fh) => {
        const { bytesWritten } = await fh.writev(bufs, pos);
        let skip = bytesWritten;
        for (const b of bufs) {
          if (skip >= b.length) {
            skip -= b.length;
            pos += b.length;
            continue;
          }
          await writeAll(fh, b.subarray(skip), pos + skip);
          pos += b.length;
          skip = 0;
        }
      })
      .catch((err: unknown) => {
        throw localStorageError(err, `writing ${this.path}`) ?? err;
      });
  }

  readAt(buf: Buffer, pos: number): Promise<number> {
    return this.handles.use(this, async (fh) => (await fh.read(buf, 0, buf.length, pos)).bytesRead).catch((err: unknown) => {
      throw localStorageError(err, `reading ${this.path}`) ?? err;
    });
  }
}

async function writeAll(fh: FileHandle, buf: Buffer, pos: number): Promise<void> {
  for (let off = 0; off < buf.length; ) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off, pos + off);
    off += bytesWritten;
  }
}
