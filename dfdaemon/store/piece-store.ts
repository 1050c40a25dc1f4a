import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Layout } from '../../shared/protocol/pieces.js';
import { TaskFile } from './task-file.js';

/**
 * The one piece store of a dfdaemon process: every task's file lives here, and the streamer,
 * downloader and uploader all use the same TaskFile objects.
 */
export class PieceStore {
  private readonly files = new Map<string, TaskFile>();

  constructor(
    readonly dir: string,
    readonly now: () => number = Date.now,
  ) {}

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
    await mkdir(this.dir, { recursive: true });
    const path = join(this.dir, `${taskId}.service`);
    const fh = await open(path, 'w+');
    const tf = new TaskFile(taskId, layout, path, fh, this.now);
    this.files.set(taskId, tf);
    return tf;
  }

  async remove(taskId: string): Promise<void> {
    const tf = this.files.get(taskId);
    if (!tf) return;
    this.files.delete(taskId);
    await tf.fh.close().catch(() => undefined);
    await rm(tf.path, { force: true });
  }

  async close(): Promise<void> {
    for (const id of [...this.files.keys()]) await this.remove(id);
  }
}
