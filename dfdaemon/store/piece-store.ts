import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Layout } from '../../shared/protocol/pieces.js';
import { FileHandles, MAX_OPEN_FILES } from './file-handles.js';
import { TaskFile } from './task-file.js';

const SUFFIX = '.service';
/** Only names open() and partPath() give (a sha256 task ID): whatever else shares the directory stays. */
const OWN_FILE = /^[0-9a-f]{64}\.service(\.part-\d+)?$/;
let parts = 0;

/**
 * The one piece store of a dfdaemon process: every task's file lives here, and the streamer,
 * downloader and uploader all use the same TaskFile objects.
 */
export class PieceStore {
  private readonly files = new Map<string, TaskFile>();
  /** Open descriptors of the task files, bounded whatever the number of files cached. */
  readonly handles: FileHandles;

  /** Files an earlier process left; settled before this one creates any. */
  private readonly leftovers: Promise<number>;

  constructor(
    readonly dir: string,
    readonly now: () => number = Date.now,
    opts: { maxOpenFiles?: number } = {},
  ) {
    this.handles = new FileHandles(opts.maxOpenFiles ?? MAX_OPEN_FILES);
    this.leftovers = this.prepare();
    // Whoever calls ready() or open() sees the failure; a store nobody asks must not crash the
    // process with an unhandled rejection.
    this.leftovers.catch(() => undefined);
  }

  /**
   * Resolves with how many task files of an earlier process (killed before it could close the
   * store) were removed. Their piece bitmaps lived only in memory, so they cannot be reused,
   * and the cache bound would never count them. Rejects when the directory cannot be written:
   * every download would otherwise fail later and quietly fall back to passing through.
   */
  ready(): Promise<number> {
    return this.leftovers;
  }

  private async prepare(): Promise<number> {
    const probe = join(this.dir, `.write-probe-${process.pid}`);
    try {
      await mkdir(this.dir, { recursive: true });
      await writeFile(probe, '');
      await rm(probe, { force: true });
    } catch (err) {
      throw new Error(`cannot write the piece cache ${this.dir} (set workHome or localrepo to a writable directory)`, { cause: err });
    }
    return this.removeLeftovers();
  }

  private async removeLeftovers(): Promise<number> {
    const entries = await readdir(this.dir, { withFileTypes: true }).catch(() => []);
    let removed = 0;
    for (const e of entries) {
      if (!e.isFile() || !OWN_FILE.test(e.name)) continue;
      // A file that will not go is skipped: open() truncates it if its task comes again.
      if (await rm(join(this.dir, e.name), { force: true }).then(() => true, () => false)) removed++;
    }
    return removed;
  }

  get size(): number {
    return this.files.size;
  }

  /** Disk the task files take or will take once complete (they are written sparsely). */
  get bytes(): number {
    let sum = 0;
    for (const tf of this.files.values()) sum += tf.layout.fileLength;
    return sum;
  }

  get(taskId: string): TaskFile | undefined {
    return this.files.get(taskId);
  }

  all(): IterableIterator<TaskFile> {
    return this.files.values();
  }

  async open(taskId: string, layout: Layout): Promise<TaskFile> {
    const existing = this.files.get(taskId);
    if (existing && existing.layout.fileLength === layout.fileLength && existing.layout.pieceSize === layout.pieceSize) {
      return existing;
    }
    if (existing) await this.remove(taskId);
    await this.leftovers;
    await mkdir(this.dir, { recursive: true });
    const path = join(this.dir, `${taskId}${SUFFIX}`);
    const tf = new TaskFile(taskId, layout, path, this.handles, this.now);
    await this.handles.create(tf);
    this.files.set(taskId, tf);
    return tf;
  }

  /**
   * A fresh path in the store for a body of unknown length, to be adopted once complete; an
   * earlier process's leftovers of these are removed at start as well.
   */
  async partPath(taskId: string): Promise<string> {
    // After the leftover sweep, which would take it for an earlier process's.
    await this.leftovers;
    return join(this.dir, `${taskId}${SUFFIX}.part-${process.pid}${++parts}`);
  }

  /** Take a file written whole (at partPath) as the complete task file of `taskId`. */
  async adopt(taskId: string, layout: Layout, from: string): Promise<TaskFile> {
    await this.leftovers;
    if (this.files.has(taskId)) await this.remove(taskId);
    const path = join(this.dir, `${taskId}${SUFFIX}`);
    await rename(from, path);
    // Opened on first read: a file adopted is not yet one more descriptor held.
    const tf = new TaskFile(taskId, layout, path, this.handles, this.now);
    for (let n = 0; n < layout.count; n++) tf.markDone(n);
    this.files.set(taskId, tf);
    return tf;
  }

  /** Forgets the task before touching the disk, so a failed rm never leaves a closed file served. */
  async remove(taskId: string): Promise<void> {
    const tf = this.files.get(taskId);
    if (!tf) return;
    this.files.delete(taskId);
    this.handles.drop(tf);
    await rm(tf.path, { force: true });
  }

  /**
   * Remove this very file, if it is still the one stored for its task: a newer download under the
   * same ID may have replaced it meanwhile. False when it was not (nothing is removed then).
   */
  async discard(tf: TaskFile): Promise<boolean> {
    if (this.files.get(tf.taskId) !== tf) return false;
    await this.remove(tf.taskId);
    return true;
  }

  async close(): Promise<void> {
    await this.leftovers.catch(() => undefined);
    for (const id of [...this.files.keys()]) await this.remove(id);
  }
}
