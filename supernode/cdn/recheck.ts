import { open, type FileHandle } from 'node:fs/promises';
import type { Logger } from 'pino';
import { WRAP_OVERHEAD } from '../../shared/protocol/pieces.js';
import type { CdnTask } from './cdn-task.js';
import { digestPiece } from './piece-io.js';

/**
 * ok: the piece on disk matches its recorded digests. corrupt: it does not. missing: the file,
 * or the piece's bytes in it, are gone. unknown: nothing to judge (no such finished task or
 * piece, the task went away during the check, or the disk would not answer).
 */
export type PieceCheck = 'ok' | 'corrupt' | 'missing' | 'unknown';

interface Queue {
  task: CdnTask;
  /** The last check queued: one check per task reads the disk at a time. */
  tail: Promise<unknown>;
  pieces: Map<number, Promise<PieceCheck>>;
}

/**
 * Re-checks pieces of finished tasks when peers say they are bad, and drops a task whose file
 * has gone bad, so the next registration fetches it from the origin again. Many peers report
 * the same bad piece at once: a check of a piece already being checked is shared, and checks of
 * other pieces of the task wait for it (after a drop they answer 'unknown' without reading).
 */
export class PieceRechecker {
  private readonly queues = new Map<string, Queue>();

  constructor(
    private readonly d: {
      get: (taskId: string) => CdnTask | undefined;
      /** Remove the task everywhere (memory, metadata, files), if it is still this one. */
      drop: (task: CdnTask) => Promise<void>;
      log: Logger;
    },
  ) {}

  check(taskId: string, num: number): Promise<PieceCheck> {
    const t = this.d.get(taskId);
    if (!t || t.status !== 'SUCCESS' || !t.layout || !Number.isInteger(num) || num < 0 || num >= t.layout.count) return Promise.resolve('unknown');
    let q = this.queues.get(taskId);
    if (!q || q.task !== t) {
      q = { task: t, tail: Promise.resolve(), pieces: new Map() };
      this.queues.set(taskId, q);
    }
    const shared = q.pieces.get(num);
    if (shared) return shared;
    const queue = q;
    const run = queue.tail.then(() => this.run(t, num));
    queue.tail = run;
    queue.pieces.set(num, run);
    void run.then(() => {
      queue.pieces.delete(num);
      if (queue.pieces.size === 0 && this.queues.get(taskId) === queue) this.queues.delete(taskId);
    });
    return run;
  }

  private async run(t: CdnTask, num: number): Promise<PieceCheck> {
    const current = () => this.d.get(t.taskId) === t && t.status === 'SUCCESS';
    if (!current()) return 'unknown';
    const result = await readAndCompare(t, num).catch((err: Error) => {
      this.d.log.warn({ taskId: t.taskId, piece: num, err: err.message }, 'cannot re-check piece');
      return 'unknown' as const;
    });
    if (result === 'ok' || result === 'unknown') return result;
    // Deleted or replaced while the disk was read: whatever was found is not about a live task.
    if (!current()) return 'unknown';
    this.d.log.warn({ taskId: t.taskId, piece: num, result }, 'piece on disk does not match its digest: task dropped, the next registration fetches it again');
    // The verdict stands even if removing the files fails: the caller must not trust the piece.
    await this.d.drop(t).catch((err: Error) => this.d.log.warn({ taskId: t.taskId, err: err.message }, 'cannot drop task'));
    return result;
  }
}

async function readAndCompare(t: CdnTask, num: number): Promise<PieceCheck> {
  const rec = t.pieces[num];
  if (!rec) return 'missing';
  const p = t.layout!.piece(num);
  let fh: FileHandle;
  try {
    fh = await open(t.path, 'r');
  } catch (err) {
    // Anything but ENOENT (EMFILE under load, EACCES) says nothing about the file's content.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw err;
  }
  try {
    const got = await digestPiece(fh, p.start, p.contentLen + WRAP_OVERHEAD);
    if (!got) return 'missing';
    return got.md5 === rec.md5 && got.sha256 === rec.sha256 ? 'ok' : 'corrupt';
  } finally {
    await fh.close();
  }
}
