import type { Logger } from '../../shared/log/index.js';
import type { PieceStore } from './piece-store.js';
import type { TaskFile } from './task-file.js';

export interface CachePolicy {
  /** Idle files older than this go (dfget's --expiretime). */
  expireMs: number;
  /** Bound on the bytes all task files take; idle files go least recently used first. */
  limitBytes: number;
}

/**
 * A file may go only when nobody reads it (no stream, no upload) and no download is filling it:
 * complete or failed, and not busy.
 */
export function idle(tf: TaskFile): boolean {
  return tf.busy === 0 && (tf.complete || tf.failure !== undefined);
}

/**
 * Which files to evict, as data: expired idle files, then the least recently used idle files
 * until `incoming` more bytes fit under the limit. Busy or downloading files are never chosen,
 * so the cache may stay over its limit while they are in use.
 */
export function chooseEvictions(files: readonly TaskFile[], now: number, policy: CachePolicy, incoming = 0): TaskFile[] {
  const out = new Set<TaskFile>();
  let total = incoming;
  for (const tf of files) total += tf.layout.fileLength;
  for (const tf of files) {
    if (idle(tf) && (tf.failure !== undefined || now - tf.lastAccess >= policy.expireMs)) {
      out.add(tf);
      total -= tf.layout.fileLength;
    }
  }
  const lru = files.filter((tf) => idle(tf) && !out.has(tf)).sort((a, b) => a.lastAccess - b.lastAccess);
  for (const tf of lru) {
    if (total <= policy.limitBytes) break;
    out.add(tf);
    total -= tf.layout.fileLength;
  }
  return [...out];
}

/** Applies chooseEvictions to the store, on a timer and before each new download. */
export class CacheGc {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: PieceStore,
    private readonly policy: CachePolicy,
    private readonly onEvict: (tf: TaskFile) => void,
    private readonly log: Logger,
  ) {}

  /** Evict what the policy says, making room for `incoming` bytes; runs one sweep at a time. */
  sweep(incoming = 0): Promise<void> {
    // Chained on a settled tail: one failed sweep must not fail every later reserve().
    const run = this.running.then(() => this.evict(incoming));
    this.running = run.catch(() => undefined);
    return run;
  }

  private async evict(incoming: number): Promise<void> {
    const victims = chooseEvictions([...this.store.all()], this.store.now(), this.policy, incoming);
    for (const tf of victims) {
      // Re-check: a reader may have arrived, or the file been replaced, while an earlier removal awaited.
      if (!idle(tf)) continue;
      try {
        if (!(await this.store.discard(tf))) continue;
        this.log.info({ taskId: tf.taskId, bytes: tf.layout.fileLength, failed: tf.failure !== undefined }, 'evicted task file');
      } catch (err) {
        // The other victims must still free their space. The store has let go of this file
        // anyway (it serves it no more), so the supernode is told all the same.
        this.log.warn({ taskId: tf.taskId, path: tf.path, err: (err as Error).message }, 'could not remove evicted task file');
      }
      this.onEvict(tf);
    }
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.sweep().catch((err: Error) => this.log.warn({ err: err.message }, 'cache sweep failed')), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
