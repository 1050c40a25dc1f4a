import { rm } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { TokenBucket } from '../../shared/ratelimit/token-bucket.js';
import { Limiter } from '../preheat/limiter.js';
import { DiskAdmission, type FreeBytes } from './admission.js';
import { CdnTask, type CdnRequest, type SourceFailure } from './cdn-task.js';
import { fillResult, type FillResult } from './failure.js';
import type { MetaStore, Restored } from './meta-store.js';
import { dataFile, partFile } from './paths.js';
import { PieceRechecker, type PieceCheck } from './recheck.js';
import { reconcileDownloads } from './reconcile.js';
import type { RetryPolicy } from './retry.js';

export type { PieceCheck } from './recheck.js';

export interface CdnOptions {
  homeDir: string;
  /** Shared by every source download: maxBandwidth - systemReservedBandwidth. */
  bucket?: TokenBucket;
  /** How long a source failure is remembered and answered at once (failAccessInterval). */
  failAccessIntervalMs: number;
  now: () => number;
  log: Logger;
  store?: MetaStore;
  /**
   * Bytes read from origins, counted per chunk as they arrive rather than per piece: the server
   * paces garbage collection on it, and pieces reach 15 MiB.
   */
  onSourceBytes?: (bytes: number) => void;
  /**
   * Origin downloads run at once (default MAX_SOURCE_FETCHES); the others wait, WAITING, for a
   * slot. Each running one holds a socket, a file and a piece buffer of up to 1 MiB.
   */
  maxFetches?: number;
  /** How transient origin failures are retried (default DEFAULT_RETRY; tests shorten it). */
  retry?: RetryPolicy;
  /** Cut an origin body that sends nothing for this long (default SOURCE_IDLE_MS). */
  sourceIdleMs?: number;
  /** Free bytes of homeDir's filesystem, for admission (default statfs). */
  freeBytes?: FreeBytes;
  /** Ask disk GC for room when a fill does not fit; resolves to the bytes freed. */
  makeRoom?: (bytes: number) => Promise<number>;
  /** Each task's end, as a fixed result (metrics). */
  onFillEnd?: (result: FillResult) => void;
  /** A transient origin failure is about to be retried (metrics). */
  onRetry?: () => void;
}

/**
 * 32 fast 20 MB fetches at once peaked at 108 MB RSS (bin/supernode), 16 at 95 MB: the guide's
 * 100 MB mem_limit. Docker pulls 3 layers at a time per client, so 16 is six clients' worth.
 */
export const MAX_SOURCE_FETCHES = 16;

/** What disk GC needs to know about a task file, whether or not it is in memory. */
export interface DiskEntry {
  taskId: string;
  bytes: number;
  accessTime: number;
  interval: number;
  running: boolean;
}

/**
 * Starts each blob's source download at most once, remembers recent source failures, and
 * knows every task on disk: those in memory and those left by an earlier run (`persisted`),
 * which are verified and resumed when a peer asks for them again.
 */
export class Cdn {
  private readonly tasks = new Map<string, CdnTask>();
  private readonly failures = new Map<string, { at: number; failure: SourceFailure }>();
  /** Deletions still removing files, by task ID: a new task for the ID opens its file after. */
  private readonly deleting = new Map<string, Promise<void>>();
  private persisted = new Map<string, Restored>();
  private readonly rechecker: PieceRechecker;
  private readonly fetches: Limiter;
  private readonly admission: DiskAdmission;

  constructor(private readonly opts: CdnOptions) {
    this.fetches = new Limiter(opts.maxFetches ?? MAX_SOURCE_FETCHES);
    this.admission = new DiskAdmission({ homeDir: opts.homeDir, log: opts.log, freeBytes: opts.freeBytes, makeRoom: opts.makeRoom });
    this.rechecker = new PieceRechecker({
      get: (id) => this.tasks.get(id),
      drop: async (t) => {
        if (this.tasks.get(t.taskId) === t) await this.delete(t.taskId);
      },
      log: opts.log,
    });
  }

  /**
   * Load what an earlier run recorded under homeDir, and make files and metadata agree: task
   * files without metadata are removed, and metadata without files is forgotten.
   */
  async restore(): Promise<number> {
    const { store, homeDir, log } = this.opts;
    if (!store) return 0;
    this.persisted = await store.load();
    const live = (id: string) => this.persisted.has(id) || this.tasks.has(id) || this.deleting.has(id);
    const { withData, removed } = await reconcileDownloads(homeDir, live);
    for (const id of [...this.persisted.keys()]) {
      if (withData.has(id)) continue;
      this.persisted.delete(id);
      await store.delete(id);
    }
    if (removed.length) log.info({ removed }, 'removed task files no metadata describes');
    return this.persisted.size;
  }

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
    const restored = this.persisted.get(req.taskId);
    this.persisted.delete(req.taskId);
    const { homeDir, bucket, log, store, now, onSourceBytes, retry, sourceIdleMs, onRetry } = this.opts;
    const admit = (t: CdnTask, bytes: number) => this.admission.admit(t, bytes);
    const task = new CdnTask(req, { homeDir, bucket, log, store, now, restored, onSourceBytes, retry, sourceIdleMs, onRetry, admit });
    this.tasks.set(req.taskId, task);
    task.once('end', (ok: boolean) => {
      this.opts.onFillEnd?.(fillResult(ok ? undefined : task.failure));
      // Only a 404 is a fact about the URL (Dragonfly's failAccessInterval). A 503, a reset or
      // a bad header says something about that moment or that requester; remembering it would
      // refuse every peer for minutes while the origin is fine again.
      if (!ok && !task.cancelled && task.failure?.code === 'SOURCE_NOT_FOUND') {
        this.failures.set(req.url, { at: this.opts.now(), failure: task.failure });
      }
    });
    const after = this.deleting.get(req.taskId);
    // A task cancelled while it waits for a slot runs at once, only to end as cancelled: a
    // deletion waiting on its end must not wait for the downloads ahead of it.
    void this.fetches.run(() => task.run(after), task.signal).catch(() => {
      if (task.status === 'WAITING') void task.run(after);
    });
    return task;
  }

  /**
   * Re-read one piece of a finished task and compare it with its recorded digests. On 'corrupt'
   * or 'missing' the task is deleted (memory, metadata, files) like a full GC would, so the next
   * registration fetches it from the origin; the caller drops its swarm state. 'unknown' when
   * the task is not in memory and SUCCESS, or the piece does not exist. Never rejects.
   */
  recheckPiece(taskId: string, pieceNum: number): Promise<PieceCheck> {
    return this.rechecker.check(taskId, pieceNum);
  }

  /** Every task file on disk, for disk GC. */
  diskEntries(): DiskEntry[] {
    const out: DiskEntry[] = [];
    for (const t of this.tasks.values()) {
      if (t.status === 'FAILED' || t.status === 'SOURCE_ERROR') continue;
      out.push({ taskId: t.taskId, bytes: t.diskBytes, accessTime: t.accessTime, interval: t.interval, running: t.status !== 'SUCCESS' });
    }
    for (const r of this.persisted.values()) {
      const t = r.task;
      out.push({ taskId: t.taskId, bytes: t.fileLength + Math.max(1, Math.ceil(t.fileLength / (t.pieceSize - 5))) * 5, accessTime: t.accessTime, interval: t.interval, running: false });
    }
    return out;
  }

  /** Blobs complete on disk and their bytes: those in memory and those an earlier run left. */
  cached(): { tasks: number; bytes: number } {
    let tasks = 0;
    let bytes = 0;
    for (const t of this.tasks.values()) {
      if (t.status !== 'SUCCESS') continue;
      tasks++;
      bytes += t.fileLength;
    }
    for (const r of this.persisted.values()) {
      if (r.task.status !== 'SUCCESS') continue;
      tasks++;
      bytes += r.task.fileLength;
    }
    return { tasks, bytes };
  }

  /** Drop a task from memory only; its files and metadata stay for a later request. */
  forget(taskId: string): void {
    const t = this.tasks.get(taskId);
    if (!t || t.status === 'RUNNING' || t.status === 'WAITING') return;
    this.tasks.delete(taskId);
    const task = t.snapshot();
    // With a store, its piece records are there already; only a store-less CDN keeps them here.
    if (task && t.status === 'SUCCESS') this.persisted.set(taskId, this.opts.store ? { task } : { task, pieces: t.pieces });
  }

  /**
   * Remove a task everywhere: memory, files and metadata. A task registered for the same ID
   * meanwhile starts at once but opens its file only after this has removed the old one.
   */
  async delete(taskId: string): Promise<void> {
    const t = this.tasks.get(taskId);
    if (t) t.cancel();
    this.tasks.delete(taskId);
    this.persisted.delete(taskId);
    const before = this.deleting.get(taskId);
    const ended = t && (t.status === 'RUNNING' || t.status === 'WAITING') ? new Promise((r) => t.once('end', r)) : undefined;
    const work = (async () => {
      await before?.catch(() => undefined);
      // The cancelled task still holds its .part open until it has wound down.
      await ended;
      await rm(dataFile(this.opts.homeDir, taskId), { force: true });
      await rm(partFile(this.opts.homeDir, taskId), { force: true });
      await this.opts.store?.delete(taskId);
    })();
    this.deleting.set(taskId, work);
    try {
      await work;
    } finally {
      if (this.deleting.get(taskId) === work) this.deleting.delete(taskId);
    }
  }

  /** Origin downloads running, and waiting for a slot. */
  get fetchSlots(): { running: number; waiting: number } {
    return this.fetches.usage;
  }

  /** Source failures held against their URL right now (or until the next sweep). */
  get rememberedFailures(): number {
    return this.failures.size;
  }

  /** Forget failures older than failAccessInterval, so URLs nobody asks for again do not pile up. */
  sweepFailures(): number {
    let n = 0;
    for (const [url, f] of this.failures) {
      if (this.opts.now() - f.at >= this.opts.failAccessIntervalMs) {
        this.failures.delete(url);
        n++;
      }
    }
    return n;
  }

  /** Stop every download and let each one finish its bookkeeping before the store closes. */
  async close(): Promise<void> {
    const ending: Promise<unknown>[] = [];
    for (const t of this.tasks.values()) {
      if (t.status === 'RUNNING' || t.status === 'WAITING') ending.push(new Promise((r) => t.once('end', r)));
      t.cancel();
    }
    await Promise.race([Promise.all(ending), new Promise((r) => setTimeout(r, 2000).unref())]);
    await this.opts.store?.close();
  }
}
