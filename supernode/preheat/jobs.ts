import { DfError } from '../../shared/errors.js';
import type { Cdn } from '../cdn/cdn.js';
import { jobKey, runJob, PreheatJob, type JobRequest, type RunDeps } from './job.js';
import { originOf } from './limiter.js';
import { parseManifestUrl, PreheatFailure } from './manifest.js';

/** Finished jobs kept for status queries; older ones are forgotten first. */
const MAX_FINISHED = 1000;
/**
 * Unfinished jobs at once for one registry. Each holds a timer, its blob list and, while it
 * waits, a place in its registry's limiter; a registry that never answers would otherwise let a
 * burst pile up until jobTimeout. Counted per registry so that such a burst does not refuse
 * another registry's jobs; MAX_UNFINISHED_ALL bounds the whole.
 */
export const MAX_UNFINISHED = 256;
export const MAX_UNFINISHED_ALL = 1024;

/**
 * Every preheat job, whichever API or webhook created it, under one numeric ID sequence: v1
 * shows the ID as a string, v2 as a number. In memory: a restart forgets jobs, not the cache.
 * IDs follow the clock in ms (never below the last one), so a restarted supernode does not hand
 * out IDs that Harbor may still be polling: an old ID then reads 404 (Harbor fails that task)
 * instead of another image's status.
 */
export class JobStore {
  private seq = 0;
  private readonly jobs = new Map<number, PreheatJob>();
  private readonly running = new Set<Promise<void>>();

  constructor(private readonly d: RunDeps & { cdn: Cdn }) {}


  /** Starts a job, or returns the unfinished one that already does the same work. */
  submit(req: JobRequest): { job: PreheatJob; joined: boolean } {
    const key = jobKey(req);
    const origin = originOf(req.url);
    let unfinished = 0;
    let sameOrigin = 0;
    for (const j of this.jobs.values()) {
      if (j.finished) continue;
      if (j.key === key) return { job: j, joined: true };
      unfinished++;
      if (j.origin === origin) sameOrigin++;
    }
    if (sameOrigin >= MAX_UNFINISHED) throw new DfError('TOO_MANY_REQUESTS', `${sameOrigin} preheat jobs for ${origin} are still running; retry once some finish`);
    if (unfinished >= MAX_UNFINISHED_ALL) throw new DfError('TOO_MANY_REQUESTS', `${unfinished} preheat jobs are still running; retry once some finish`);
    this.seq = Math.max(this.seq + 1, this.d.now());
    const candidate = new PreheatJob(this.seq, req, this.d.now());
    this.jobs.set(candidate.id, candidate);
    this.prune();
    const p = runJob(candidate, this.d).finally(() => this.running.delete(p));
    this.running.add(p);
    return { job: candidate, joined: false };
  }

  /**
   * A successful job for the same content whose blobs are all still in the CDN. Only for a URL
   * by digest or a request naming the digest: a tag may point at new content since.
   */
  cached(req: JobRequest): PreheatJob | undefined {
    const immutable = req.digest !== '' || (req.type === 'image' && isDigestUrl(req.url));
    if (!immutable) return undefined;
    const key = jobKey(req);
    let found: PreheatJob | undefined;
    for (const j of this.jobs.values()) {
      if (j.state !== 'SUCCESS' || j.key !== key) continue;
      if (j.blobs.every((b) => this.d.cdn.get(b.taskId)?.status === 'SUCCESS')) found = j;
    }
    return found;
  }

  get unfinished(): number {
    let n = 0;
    for (const j of this.jobs.values()) if (!j.finished) n++;
    return n;
  }

  get(id: number): PreheatJob | undefined {
    return this.jobs.get(id);
  }

  list(): PreheatJob[] {
    return [...this.jobs.values()];
  }

  /** Forgets a job, stopping it first if it still runs (its CDN downloads go on: peers may share them). */
  delete(id: number): boolean {
    const j = this.jobs.get(id);
    if (j === undefined) return false;
    if (!j.finished) j.controller.abort(new PreheatFailure('the preheat was deleted'));
    this.jobs.delete(id);
    return true;
  }

  async close(): Promise<void> {
    for (const j of this.jobs.values()) if (!j.finished) j.controller.abort(new PreheatFailure('the supernode is shutting down'));
    await Promise.all(this.running);
  }

  private prune(): void {
    const finished = [...this.jobs.values()].filter((j) => j.finished);
    for (const j of finished.slice(0, Math.max(0, finished.length - MAX_FINISHED))) this.jobs.delete(j.id);
  }
}

function isDigestUrl(url: string): boolean {
  try {
    return parseManifestUrl(url).reference.includes(':');
  } catch {
    return false;
  }
}
