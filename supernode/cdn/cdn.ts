import type { Logger } from 'pino';
import type { TokenBucket } from '../../shared/ratelimit/token-bucket.js';
import { CdnTask, type CdnRequest, type SourceFailure } from './cdn-task.js';

export interface CdnOptions {
  homeDir: string;
  /** Shared by every source download: maxBandwidth - systemReservedBandwidth. */
  bucket?: TokenBucket;
  /** How long a source failure is remembered and answered at once (failAccessInterval). */
  failAccessIntervalMs: number;
  now: () => number;
  log: Logger;
  onSourceBytes?: (bytes: number) => void;
}

/** Starts each blob's source download at most once and remembers recent source failures. */
export class Cdn {
  private readonly tasks = new Map<string, CdnTask>();
  private readonly failures = new Map<string, { at: number; failure: SourceFailure }>();

  constructor(private readonly opts: CdnOptions) {}

  get(taskId: string): CdnTask | undefined {
    return this.tasks.get(taskId);
  }

  all(): IterableIterator<CdnTask> {
    return this.tasks.values();
  }

  /** A recent failure for this URL, if it is still within failAccessInterval. */
  recentFailure(url: string): SourceFailure | undefined {
    const f = this.failures.get(url);
    if (!f) return undefined;
    if (this.opts.now() - f.at < this.opts.failAccessIntervalMs) return f.failure;
    this.failures.delete(url);
    return undefined;
  }

  /** The running or finished task for req.taskId, starting it if needed. Throws a recent failure. */
  ensure(req: CdnRequest): CdnTask {
    const existing = this.tasks.get(req.taskId);
    if (existing && existing.status !== 'FAILED' && existing.status !== 'SOURCE_ERROR') return existing;
    const failure = this.recentFailure(req.url);
    if (failure) throw failure;
    const task = new CdnTask(req, this.opts.homeDir, this.opts.bucket, this.opts.log);
    const count = this.opts.onSourceBytes;
    if (count) task.on('piece', (n: number) => count(task.pieces[n].contentLen));
    this.tasks.set(req.taskId, task);
    task.once('end', (ok: boolean) => {
      // An auth failure belongs to the requester's credentials, not to the URL: remembering it
      // would refuse the next peer, which may hold a valid token.
      if (!ok && task.failure && task.failure.code !== 'SOURCE_CORRUPT' && task.failure.code !== 'SOURCE_AUTH') {
        this.failures.set(req.url, { at: this.opts.now(), failure: task.failure });
      }
    });
    void task.run();
    return task;
  }

  delete(taskId: string): void {
    const t = this.tasks.get(taskId);
    if (t) t.cancel();
    this.tasks.delete(taskId);
  }
}
