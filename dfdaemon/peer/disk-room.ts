import { statfs } from 'node:fs/promises';
import type { Layout } from '../../shared/protocol/pieces.js';
import { LocalStorageError, localStorageError } from '../store/disk-error.js';
import type { TaskFile } from '../store/task-file.js';
import type { DownloaderOptions } from './download-types.js';

/**
 * After the piece cache refused a write (full, over quota, read-only), new downloads are refused
 * this long, so the proxy passes blob requests through before it sends any header, instead of
 * starting a download that would break off. A task already complete here is still served.
 */
export const DISK_FULL_MS = 30_000;

/**
 * The piece cache as the downloads see it: whether a task file still fits on its disk, and
 * whether the disk refused writes lately (then new downloads are refused for DISK_FULL_MS).
 */
export class DiskRoom {
  /** The piece cache's last write failure, while it is fresh (DISK_FULL_MS). */
  private diskFailure: { at: number; err: LocalStorageError } | undefined;

  constructor(
    private readonly o: Pick<DownloaderOptions, 'store' | 'reserve' | 'log'>,
    /** The downloader's stop signal: failures while shutting down are not noted. */
    private readonly signal: AbortSignal,
  ) {}

  /** Why new downloads are refused right now (the piece cache is unwritable), if they are. */
  get storageFailure(): LocalStorageError | undefined {
    const f = this.diskFailure;
    if (f && Date.now() - f.at < DISK_FULL_MS) return f.err;
    this.diskFailure = undefined;
    return undefined;
  }

  /**
   * A task file for this layout; a failed one is reopened, keeping its verified pieces. Refused
   * with a LocalStorageError when the disk has no room for what the file still lacks (after the
   * cache made what room it could) or the file cannot be created.
   */
  async open(taskId: string, layout: Layout): Promise<TaskFile> {
    const held = this.o.store.get(taskId);
    const sameLayout = held && held.layout.fileLength === layout.fileLength && held.layout.pieceSize === layout.pieceSize;
    if (!held) await this.o.reserve?.(layout.fileLength);
    const need = layout.fileLength - (sameLayout ? heldBytes(held) : 0);
    let room = await this.room(held);
    // A new task file has had its sweep above; a reopened one gets it only when it must.
    if (room < need && held) {
      await this.o.reserve?.(layout.fileLength);
      room = await this.room(held);
    }
    // Only this blob is too big for what is left: smaller ones still fit, so this is no
    // reason to pass every download through for a while.
    if (room < need) throw new LocalStorageError('ENOSPC', `the piece cache ${this.o.store.dir} has ${room} bytes free for a ${need}-byte download`);
    try {
      const tf = await this.o.store.open(taskId, layout);
      tf.retry();
      return tf;
    } catch (err) {
      const local = localStorageError(err, `opening the task file of ${taskId}`);
      if (!local) throw err;
      this.noteDiskFailure(local, layout.fileLength);
      throw local;
    }
  }

  /**
   * Free bytes in the piece cache's file system, less what the downloads already running there
   * (other than `except`) still have to write: task files are written sparsely, as pieces come.
   */
  private async room(except?: TaskFile): Promise<number> {
    const fs = await statfs(this.o.store.dir).catch(() => undefined);
    if (!fs) return Infinity;
    let owed = 0;
    for (const tf of this.o.store.all()) {
      if (tf !== except && !tf.complete && !tf.failure) owed += tf.layout.fileLength - heldBytes(tf);
    }
    return fs.bavail * fs.bsize - owed;
  }

  /**
   * A download ended. When the piece cache refused its bytes, new downloads are refused for a
   * while (the proxy passes them through) and the cache is asked to make room.
   */
  failed(tf: TaskFile, err: Error): void {
    tf.fail(err);
    if (err instanceof LocalStorageError) this.noteDiskFailure(err, tf.layout.fileLength);
  }

  noteDiskFailure(err: LocalStorageError, bytes: number): void {
    // No descriptor left says nothing about the disk, and passes as files and sockets close.
    if (this.signal.aborted || err.outOfFds) return;
    const fresh = this.storageFailure === undefined;
    this.diskFailure = { at: Date.now(), err };
    if (fresh) this.o.log.warn({ err: err.message, code: err.errno, refuseMs: DISK_FULL_MS }, 'the piece cache cannot be written: passing downloads through for a while');
    // Failed task files (this one too, once nobody reads it) and expired ones go first.
    void Promise.resolve(this.o.reserve?.(bytes)).catch((e: Error) => this.o.log.warn({ err: e.message }, 'cache sweep after a disk failure failed'));
  }
}

/** Bytes of the verified pieces a task file holds (all but the last piece are full). */
function heldBytes(tf: TaskFile): number {
  const { layout } = tf;
  if (tf.complete) return layout.fileLength;
  const last = layout.count - 1;
  return tf.completedPieces * layout.contentSize - (tf.has(last) ? layout.contentSize - layout.piece(last).contentLen : 0);
}
