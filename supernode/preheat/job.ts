import { setMaxListeners } from 'node:events';
import type { RegistryCredentials } from '../../shared/config/preheat.js';
import type { Logger } from '../../shared/log/index.js';
import { redactUrl } from '../../shared/errors.js';
import { blobDigestOf, filterUrl, taskId } from '../../shared/protocol/taskid.js';
import { formatDuration } from '../../shared/units.js';
import type { Cdn } from '../cdn/cdn.js';
import type { CdnTask } from '../cdn/cdn-task.js';
import { originOf, type HostLimiters } from './limiter.js';
import { parseManifestUrl, PreheatFailure } from './manifest.js';
import type { PreheatMetrics } from './metrics.js';
import type { RegistryTls } from './registry-client.js';
import { resolveImage, type BlobToCache } from './resolve.js';

export type JobState = 'WAITING' | 'RUNNING' | 'SUCCESS' | 'FAILED';

export interface JobRequest {
  type: 'image' | 'file';
  /** Manifest URL (image) or file URL. */
  url: string;
  /** Sent to the registry: Harbor's Authorization and the like. */
  headers: Record<string, string>;
  /** Query keys left out of a file's task ID (dfget `-f`). */
  filter: readonly string[];
  identifier: string;
  /** `os/arch[/variant]` to expand an index to; empty = all. */
  platforms: readonly string[];
  timeoutMs: number;
  trigger: 'v1' | 'v2' | 'webhook';
  /** The manifest digest the caller says the URL resolves to (Harbor's v1 `digest`), or ''. */
  digest: string;
  credentials: RegistryCredentials | null;
  /** The v2 request body, echoed in its job view. */
  args?: unknown;
}

export interface BlobProgress extends BlobToCache {
  taskId: string;
  state: JobState;
  error: string;
  bytes: number;
}

/**
 * Requests with one key do the same work; a second one joins the first while it runs. The digest
 * counts: a tag pushed again while its old content is still being warmed names other blobs.
 */
export const jobKey = (r: JobRequest): string => JSON.stringify([r.type, r.url, r.digest, r.filter, r.identifier, r.platforms]);

/** One preheat: a manifest (or a file) expanded to blobs, each cached as the CDN task a later pull will hit. */
export class PreheatJob {
  state: JobState = 'WAITING';
  error = '';
  blobs: BlobProgress[] = [];
  startedAt = 0;
  finishedAt = 0;
  updatedAt: number;
  readonly controller = new AbortController();

  /** The registry (or file server) it reads from: its limits are counted per origin. */
  readonly origin: string;

  constructor(readonly id: number, readonly req: JobRequest, readonly createdAt: number) {
    this.origin = originOf(req.url);
    this.updatedAt = createdAt;
    // One abort listener per worker and per blob a worker waits on: past Node's warning at 10.
    setMaxListeners(0, this.controller.signal);
  }

  get key(): string {
    return jobKey(this.req);
  }

  get finished(): boolean {
    return this.state === 'SUCCESS' || this.state === 'FAILED';
  }

  get cached(): number {
    return this.blobs.filter((b) => b.state === 'SUCCESS').length;
  }
}

class Timeout extends Error {}

export interface RunDeps {
  cdn: Cdn;
  limiters: HostLimiters;
  tls: RegistryTls;
  log: Logger;
  now: () => number;
  metrics?: PreheatMetrics;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** Runs a job to SUCCESS or FAILED; never rejects and never outlives req.timeoutMs. */
export async function runJob(job: PreheatJob, d: RunDeps): Promise<void> {
  const signal = job.controller.signal;
  // A Node timer past 2^31-1 ms (24.8 days) fires at once; longer than that is as good as none.
  const timer = setTimeout(() => job.controller.abort(new Timeout()), Math.min(job.req.timeoutMs, MAX_TIMER_MS));
  const log = d.log.child({ preheat: job.id });
  // Looked up at each use: an idle origin's limiter may be dropped and made anew meanwhile.
  const slot = <T>(fn: () => Promise<T>): Promise<T> => d.limiters.for(job.origin).run(fn, signal);
  try {
    job.state = 'RUNNING';
    job.startedAt = job.updatedAt = d.now();
    const { blobs, auth } = await listBlobs(job, d, slot, signal);
    job.blobs = blobs.map((b) => ({ ...b, taskId: blobTaskId(job, b.url), state: 'WAITING', error: '', bytes: 0 }));
    job.updatedAt = d.now();
    log.info({ url: redactUrl(job.req.url), blobs: blobs.length }, 'preheat resolved');
    // A few workers per job, not a promise (and an abort listener) per blob: an index listing
    // thousands of blobs must not cost the event loop quadratic time.
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < job.blobs.length && !signal.aborted) {
        const b = job.blobs[next++];
        // A file's signed-URL parameters, left out of its task ID, make the task a guarded one.
        const taskUrl = job.req.type === 'file' ? filterUrl(b.url, job.req.filter) : undefined;
        await slot(() => cacheBlob(b, auth, d, signal, taskUrl)).then(
          () => undefined,
          (err: unknown) => {
            if (signal.aborted) return;
            b.state = 'FAILED';
            b.error = (err as Error).message;
          },
        );
        job.updatedAt = d.now();
      }
    };
    await Promise.all(Array.from({ length: Math.min(d.limiters.max, job.blobs.length) }, worker));
    signal.throwIfAborted();
    const failed = job.blobs.filter((b) => b.state === 'FAILED');
    if (failed.length > 0) {
      const shown = failed.slice(0, 3).map((b) => `${b.digest}: ${b.error}`).join('; ');
      throw new PreheatFailure(`${failed.length} of ${job.blobs.length} blobs failed: ${shown}${failed.length > 3 ? '; …' : ''}`);
    }
    job.state = 'SUCCESS';
  } catch (err) {
    const reason: unknown = signal.aborted ? signal.reason : err;
    job.state = 'FAILED';
    job.error = reason instanceof Timeout
      ? `preheat timed out after ${formatDuration(job.req.timeoutMs)} with ${job.cached} of ${job.blobs.length || '?'} blobs cached`
      : reason instanceof Error ? reason.message : String(reason);
    if (!(reason instanceof PreheatFailure || reason instanceof Timeout)) log.warn({ err: reason }, 'preheat failed unexpectedly');
  } finally {
    clearTimeout(timer);
    // A finished job stays listed for status queries, maybe for days: its registry token need not.
    job.req.headers = {};
    job.finishedAt = job.updatedAt = d.now();
    log.info({ state: job.state, error: job.error || undefined, blobs: job.blobs.length, cached: job.cached }, 'preheat finished');
    d.metrics?.finished(job);
  }
}

/** Runs `fn` in one of the job's registry's slots. */
type Slot = <T>(fn: () => Promise<T>) => Promise<T>;

/** The headers blob GETs need, and for images a way to get fresh ones when a token expires mid-job. */
interface BlobAuth {
  headers(): Record<string, string>;
  renew?(): Promise<void>;
}

async function listBlobs(job: PreheatJob, d: RunDeps, slot: Slot, signal: AbortSignal): Promise<{ blobs: BlobToCache[]; auth: BlobAuth }> {
  if (job.req.type === 'file') {
    return { blobs: [{ url: job.req.url, digest: blobDigestOf(job.req.url) ?? '' }], auth: { headers: () => job.req.headers } };
  }
  const target = parseManifestUrl(job.req.url);
  // Loaded on the first job: undici costs the supernode ~20 MB of RSS it needs nowhere else.
  const { RegistryClient } = await import('./registry-client.js');
  const client = new RegistryClient(job.req.headers, { tls: d.tls, credentials: job.req.credentials, signal });
  // Reading manifests holds a slot too: a burst of jobs must not open a connection each at once.
  const image = await slot(() => resolveImage(client, target, job.req.platforms, job.req.digest));
  if (image.blobs.length === 0) throw new PreheatFailure(`manifest ${job.req.url} lists no blobs the registry serves`);
  return { blobs: image.blobs, auth: { headers: () => client.headers, renew: () => client.renew(job.req.url, target.repo) } };
}

/** The task ID a dfdaemon (blob URL, `-f` filter) or dfget (file URL, filter, identifier) computes. */
function blobTaskId(job: PreheatJob, url: string): string {
  if (job.req.type === 'image') return taskId(url);
  return taskId(filterUrl(url, job.req.filter), { identifier: job.req.identifier });
}

async function cacheBlob(b: BlobProgress, auth: BlobAuth, d: RunDeps, signal: AbortSignal, taskUrl: string | undefined): Promise<void> {
  b.state = 'RUNNING';
  let task = await fetchOnce(b, auth.headers(), d, signal, taskUrl);
  // Registry tokens live minutes; a long job can outlast the one the manifest was read with.
  if (task.failure?.code === 'SOURCE_AUTH' && auth.renew !== undefined) {
    await auth.renew();
    task = await fetchOnce(b, auth.headers(), d, signal, taskUrl);
  }
  if (task.status !== 'SUCCESS') throw new PreheatFailure(task.failure?.message ?? `the CDN task ended ${task.status}`);
  b.state = 'SUCCESS';
  b.bytes = task.fileLength;
}

async function fetchOnce(b: BlobProgress, headers: Record<string, string>, d: RunDeps, signal: AbortSignal, taskUrl: string | undefined): Promise<CdnTask> {
  let task: CdnTask;
  try {
    task = d.cdn.ensure({
      taskId: b.taskId,
      url: b.url,
      headers,
      insecure: d.tls.insecure,
      rootCAs: [...d.tls.rootCAs],
      expectSha256: blobDigestOf(b.url),
      taskUrl,
    });
  } catch (f) {
    // The CDN remembers a recent source failure for this URL and answers it at once.
    throw new PreheatFailure((f as { message?: string }).message ?? String(f));
  }
  await ended(task, signal);
  return task;
}

function ended(task: CdnTask, signal: AbortSignal): Promise<void> {
  if (task.status === 'SUCCESS' || task.status === 'FAILED' || task.status === 'SOURCE_ERROR') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (): void => {
      signal.removeEventListener('abort', abort);
      resolve();
    };
    const abort = (): void => {
      task.off('end', done);
      reject(signal.reason);
    };
    task.once('end', done);
    signal.addEventListener('abort', abort, { once: true });
  });
}
