import type { Hash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { rename, rm, type FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { redactUrl } from '../../shared/errors.js';
import { contentRange } from '../../shared/http/client.js';
import { pieceSizeFor, Layout, WRAP_OVERHEAD } from '../../shared/protocol/pieces.js';
import type { TokenBucket } from '../../shared/ratelimit/token-bucket.js';
import { cutPieces, type PieceRecord } from './cutter.js';
import { fail, onDisk, statusFailure, toFailure, type SourceFailure } from './failure.js';
import type { MetaStore, PersistedTask, Restored } from './meta-store.js';
import { dataFile, partFile } from './paths.js';
import { DEFAULT_RETRY, retryDelay, type RetryPolicy } from './retry.js';
import { resumeAnswer, skipBytes, validatorOf } from './resume.js';
import { copyHashes, openTaskFile, verifyRestored, type Hashes } from './cdn-file.js';
import { isGuarded } from './guard.js';
import { openSource, requestedRange } from './source.js';

export type { SourceFailure } from './failure.js';

export type CdnStatus = 'WAITING' | 'RUNNING' | 'SUCCESS' | 'FAILED' | 'SOURCE_ERROR';

export interface CdnRequest {
  taskId: string;
  url: string;
  headers: Record<string, string>;
  insecure: boolean;
  rootCAs: string[];
  /** sha256 the whole content must have (from a blob URL); checked before the task succeeds. */
  expectSha256?: string;
  /** md5 (hex) the whole content must have (the registration's md5); checked the same way. */
  expectMd5?: string;
  /** The URL the task ID was computed from, when it leaves out some of `url`'s parameters. */
  taskUrl?: string;
}

export interface CdnTaskDeps {
  homeDir: string;
  bucket?: TokenBucket;
  log: Logger;
  store?: MetaStore;
  now: () => number;
  /** What an earlier run left on disk, to verify and continue from. */
  restored?: Restored;
  /** Bytes read from the origin, counted as they arrive. */
  onSourceBytes?: (bytes: number) => void;
  /** How transient origin failures are retried (default DEFAULT_RETRY). */
  retry?: RetryPolicy;
  /** Cut an origin body that sends nothing for this long (default SOURCE_IDLE_MS). */
  sourceIdleMs?: number;
  /**
   * Called once the length is known, before anything is written: resolves when the disk has
   * room for `bytes` more, throws a LOCAL_STORAGE failure when it has not.
   */
  admit?: (task: CdnTask, bytes: number) => Promise<void>;
  /** A transient origin failure is about to be retried. */
  onRetry?: () => void;
}


/**
 * One blob fetched once from its origin. Emits 'piece' (num) as each piece lands on disk and
 * 'end' (ok) once; `ready` settles when the origin has answered with a length. A task restored
 * after a restart re-verifies every piece on disk against its recorded md5 before offering it,
 * then continues from the first missing piece with a Range request.
 */
export class CdnTask extends EventEmitter {
  status: CdnStatus = 'WAITING';
  fileLength = -1;
  pieceSize = 0;
  layout: Layout | undefined;
  readonly pieces: PieceRecord[] = [];
  failure: SourceFailure | undefined;
  bytesFromSource = 0;
  /** Bytes the origin was asked for from this offset on (0 = from scratch). */
  resumedFrom = 0;
  /** Wrapped bytes of the pieces on disk: what the task no longer owes the disk. */
  writtenBytes = 0;
  /** Where the next fetch starts: the first piece not yet whole, and the file hashes up to it. */
  private resumeAt: { next: number; hashes?: Hashes } = { next: 0 };
  /** The first answer's ETag or Last-Modified, sent as If-Range when resuming. */
  private validator: string | undefined;
  private admitted = false;
  /**
   * Fetched with credentials (or a signed URL), so its content may be private: a peer joins
   * only once the origin has let it in too (service/registrant-gate). A task restored from
   * metadata written before this was kept counts as guarded.
   */
  readonly guarded: boolean;
  /**
   * The URL the task ID was computed from, as its first registrant gave it. The ID hashes the
   * task URL and the identifier with no separator between them, so another split of the same
   * string names the same task: a guarded task takes registrants of this URL only. Undefined for
   * a signed-URL task restored from metadata written before this was kept.
   */
  readonly taskUrl: string | undefined;
  /** When the origin last answered this task's own request (req) with a 2xx. */
  sourceOkAt: number | undefined;
  sha256: string | undefined;
  md5: string | undefined;
  accessTime: number;
  interval = 0;
  accessCount = 0;
  /**
   * When touch() last ran, kept across forget/reload and restarts: the interval is the gap
   * between touches, and a reloaded task starting from "now" would measure every gap as ~0.
   */
  private lastTouch: number;
  readonly ready: Promise<void>;
  private resolveReady!: () => void;
  private rejectReady!: (f: SourceFailure) => void;
  private readonly abort = new AbortController();

  constructor(
    readonly req: CdnRequest,
    private readonly d: CdnTaskDeps,
  ) {
    super();
    this.setMaxListeners(0);
    // Being started is an access (a preheat never touches); the interval runs between touches.
    this.accessTime = d.now();
    const prev = d.restored?.task;
    this.guarded = prev ? prev.guarded !== false : isGuarded(req.url, req.headers, req.taskUrl);
    this.taskUrl = prev ? (prev.taskUrl ?? (new URL(prev.url).search === '' ? prev.url : undefined)) : (req.taskUrl ?? req.url);
    this.lastTouch = prev?.lastTouch ?? prev?.accessTime ?? this.accessTime;
    if (prev) {
      this.interval = prev.interval;
      this.accessCount = prev.accessCount;
    }
    this.ready = new Promise((res, rej) => {
      this.resolveReady = res;
      this.rejectReady = rej;
    });
    // Nobody may be waiting on ready when the task fails later; that is not an unhandled error.
    this.ready.catch(() => undefined);
  }

  get taskId(): string {
    return this.req.taskId;
  }

  /** The file that holds the verified pieces right now. */
  get path(): string {
    return this.status === 'SUCCESS' ? dataFile(this.d.homeDir, this.taskId) : partFile(this.d.homeDir, this.taskId);
  }

  /** Bytes this task occupies on disk (wrapped). */
  get diskBytes(): number {
    return this.layout ? this.layout.fileLength + this.layout.count * WRAP_OVERHEAD : 0;
  }

  hasPiece(num: number): boolean {
    return this.pieces[num] !== undefined;
  }

  /** Record an access: GC keeps tasks that are fetched regularly. */
  touch(): void {
    const now = this.d.now();
    if (this.accessCount > 0) this.interval = (this.interval * (this.accessCount - 1) + (now - this.lastTouch)) / this.accessCount;
    this.accessCount++;
    this.accessTime = now;
    this.lastTouch = now;
    if (this.status === 'SUCCESS') this.persist();
  }

  /** Aborted by cancel(). */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  cancel(): void {
    this.cancelled = true;
    this.abort.abort();
  }

  private persist(): void {
    const t = this.snapshot();
    if (!this.d.store || !t) return;
    this.d.store.putTask(t).catch((err: Error) => this.d.log.warn({ taskId: this.taskId, err: err.message }, 'cannot persist task'));
  }

  /** The task as it would be restored after a restart (undefined before the length is known). */
  snapshot(): PersistedTask | undefined {
    if (!this.layout) return undefined;
    return {
      taskId: this.taskId,
      url: this.req.url,
      fileLength: this.fileLength,
      pieceSize: this.pieceSize,
      status: this.status === 'SUCCESS' ? 'SUCCESS' : 'RUNNING',
      md5: this.md5,
      sha256: this.sha256,
      expectSha256: this.req.expectSha256,
      expectMd5: this.req.expectMd5,
      accessTime: this.accessTime,
      lastTouch: this.lastTouch,
      interval: this.interval,
      accessCount: this.accessCount,
      guarded: this.guarded,
      taskUrl: this.taskUrl,
    };
  }

  private setLayout(length: number, pieceSize: number): void {
    this.fileLength = length;
    this.pieceSize = pieceSize;
    if (length >= 0) this.layout = new Layout(length, pieceSize);
  }

  private addPiece(num: number, rec: PieceRecord, fromSource: boolean): void {
    this.pieces[num] = rec;
    this.writtenBytes += rec.contentLen + WRAP_OVERHEAD;
    if (fromSource) {
      this.bytesFromSource += rec.contentLen;
      this.d.store?.putPiece(this.taskId, num, rec).catch((err: Error) => this.d.log.warn({ taskId: this.taskId, err: err.message }, 'cannot persist piece'));
    }
    this.emit('piece', num, fromSource);
  }

  /** Set by cancel(): whoever cancelled owns the files (delete removes them, shutdown keeps them). */
  cancelled = false;

  /** `after`: file work of an earlier task with this ID (a deletion) that must finish first. */
  async run(after?: Promise<unknown>): Promise<void> {
    this.status = 'RUNNING';
    this.emit('running');
    const r = this.d.restored;
    let fh: FileHandle | undefined;
    try {
      await after?.catch(() => undefined);
      if (this.cancelled) throw new Error('cancelled');
      fh = await onDisk('open the task file', openTaskFile(this.d.homeDir, this.taskId, r !== undefined));
      if (r) {
        this.setLayout(r.task.fileLength, r.task.pieceSize);
        this.resolveReady();
        const recs = r.pieces ?? (await onDisk('read the piece records', this.d.store?.pieces(this.taskId) ?? Promise.resolve([])));
        this.resumeAt = await onDisk('verify the task file', verifyRestored(fh, this.layout!, recs, (n, rec) => this.addPiece(n, rec, false)));
        this.d.log.info({ taskId: this.taskId, verified: this.resumeAt.next, of: this.layout!.count }, 'restored cdn task');
      }
      const h = this.resumeAt.hashes;
      if (this.layout && h && this.resumeAt.next >= this.layout.count) await this.finish(fh, h.md5.digest('hex'), h.sha256.digest('hex'), this.fileLength);
      else await this.fill(fh);
    } catch (err) {
      await fh?.close().catch(() => undefined);
      // A cancelled task leaves its files to the canceller: a deletion removes them in order with
      // any new task for this ID, and a shutdown keeps them so the next run resumes. Unless its
      // length never came: such a task cannot be resumed, so nothing of it is worth keeping.
      if (!this.cancelled || !this.layout) {
        // The disk may be the reason this failed; cleaning up must not throw past run().
        await rm(partFile(this.d.homeDir, this.taskId), { force: true }).catch(() => undefined);
        await this.d.store?.delete(this.taskId).catch(() => undefined);
      }
      const url = redactUrl(this.req.url);
      if (this.cancelled) {
        // A delete or a shutdown stopped it: nothing to blame on the origin or the disk.
        this.failure = fail('CANCELLED', 500, 'the cdn task was cancelled (deleted, or the supernode is stopping)');
        this.d.log.info({ taskId: this.taskId, url, pieces: this.pieces.length }, 'cdn task cancelled');
      } else {
        this.failure = toFailure(err);
        this.d.log.warn({ taskId: this.taskId, url, failure: this.failure }, 'cdn task failed');
      }
      this.status = this.failure.dfCode === 500 ? 'FAILED' : 'SOURCE_ERROR';
      this.rejectReady(this.failure);
      this.emit('end', false);
    }
  }

  /**
   * Fetch from resumeAt on. A transient origin failure (reset, stall, refused connection,
   * 5xx/429) is retried after a backoff from the first piece not yet whole, with a Range; the
   * task stays RUNNING meanwhile and its finished pieces stay offered, so peers keep fetching
   * from the CDN instead of each going to the origin.
   */
  private async fill(fh: FileHandle): Promise<void> {
    const policy = this.d.retry ?? DEFAULT_RETRY;
    let inARow = 0;
    for (let total = 1; ; total++) {
      const from = this.resumeAt.next;
      try {
        const h = this.resumeAt.hashes;
        return await this.fetch(fh, from, h && copyHashes(h));
      } catch (err) {
        inARow = this.resumeAt.next > from ? 1 : inARow + 1;
        // Without a length, pieces were announced as full ones: another answer may lay them out
        // otherwise, so only a task that has announced nothing starts over.
        const resumable = this.layout !== undefined || this.pieces.length === 0;
        const f = toFailure(err);
        const wait = this.cancelled || !resumable ? undefined : retryDelay(f, inARow, total, policy);
        if (wait === undefined) throw err;
        if (!this.layout) this.resumeAt = { next: 0 };
        this.d.onRetry?.();
        this.d.log.warn({ taskId: this.taskId, failure: f.message, retryInMs: wait, fromPiece: this.resumeAt.next, attempt: inARow }, 'cdn source failed: retrying');
        await sleep(wait, undefined, { signal: this.abort.signal });
      }
    }
  }

  private async fetch(fh: FileHandle, start: number, hashes: { md5: Hash; sha256: Hash } | undefined): Promise<void> {
    const from = start > 0 && this.layout ? this.layout.piece(start).rawStart : 0;
    const range = requestedRange(this.req.headers);
    const ifRange = from > 0 && !range ? this.validator : undefined;
    const src = await openSource(this.req.url, { ...this.req, from, range, ifRange, signal: this.abort.signal, idleMs: this.d.sourceIdleMs }).catch((err: Error) => {
      throw fail('SOURCE_UNREACHABLE', 607, `cannot reach ${redactUrl(this.req.url)}: ${err.message}`);
    });
    if (src.status < 200 || src.status >= 300) {
      src.body.resume();
      throw statusFailure(src.status, this.req.url, src.headers['retry-after']);
    }
    this.sourceOkAt = this.d.now();
    let length = src.length;
    if (range) {
      // A ranged task holds the slice, not the file: the origin must answer from where we asked.
      const cr = contentRange(src.headers);
      if (src.status !== 206 || !cr || cr.start !== range.start + from) {
        src.body.resume();
        throw fail('SOURCE_BAD_STATUS', 500, `source did not honour Range bytes=${range.start + from}- (status ${src.status})`, src.status);
      }
      length = Math.min(range.end ?? cr.total - 1, cr.total - 1) - range.start + 1;
    }
    let body = src.body;
    if (from > 0) {
      // Pieces before `from` were announced with their digests: the fill goes on in that layout
      // with that content, or the task fails (the next registration fetches the new content).
      const r = range
        ? length === this.fileLength ? { skip: 0 } : { changed: `the origin's length changed from ${this.fileLength} to ${length} during the fetch` }
        : resumeAnswer(src.status, src.headers, length, from, this.fileLength, this.validator);
      if ('changed' in r) {
        src.body.destroy();
        throw fail('SOURCE_CORRUPT', 500, r.changed);
      }
      body = skipBytes(src.body, r.skip, this.d.onSourceBytes);
    } else {
      this.validator = validatorOf(src.headers);
    }
    this.resumedFrom = from;
    if (!this.admitted && length >= 0 && this.d.admit) {
      // Before anything is written or any registrant told the length: a fill that cannot fit
      // would only fill the disk under every other running fill too.
      const layout = this.layout ?? new Layout(length, pieceSizeFor(length));
      try {
        await this.d.admit(this, layout.fileLength + layout.count * WRAP_OVERHEAD - this.writtenBytes);
      } catch (err) {
        src.body.destroy();
        throw err;
      }
      this.admitted = true;
    }
    if (!this.layout) {
      this.setLayout(length, pieceSizeFor(length));
      this.resolveReady();
    }
    this.persist();
    const result = await cutPieces({
      body,
      fh,
      pieceSize: this.pieceSize,
      layout: this.layout,
      bucket: this.d.bucket,
      signal: this.abort.signal,
      startPiece: start,
      hashes,
      onPiece: (num, rec) => this.addPiece(num, rec, true),
      onCheckpoint: (next, h) => {
        this.resumeAt = { next, hashes: h };
      },
      onBytes: this.d.onSourceBytes,
    });
    await this.finish(fh, result.md5, result.sha256, result.bytes);
  }

  private async finish(fh: FileHandle, md5: string, sha256: string, bytes: number): Promise<void> {
    if (this.fileLength >= 0 && bytes !== this.fileLength) {
      throw fail('SOURCE_CORRUPT', 500, `source sent ${bytes} bytes, expected ${this.fileLength}`);
    }
    if (this.req.expectSha256 && sha256 !== this.req.expectSha256) {
      throw fail('SOURCE_CORRUPT', 500, `sha256 ${sha256} does not match ${this.req.expectSha256}`);
    }
    if (this.req.expectMd5 && md5 !== this.req.expectMd5.toLowerCase()) {
      throw fail('SOURCE_CORRUPT', 500, `md5 ${md5} does not match ${this.req.expectMd5}`);
    }
    if (this.fileLength < 0) this.setLayout(bytes, this.pieceSize);
    this.sha256 = sha256;
    this.md5 = md5;
    await onDisk('close the task file', fh.close());
    await onDisk('rename the task file', rename(partFile(this.d.homeDir, this.taskId), dataFile(this.d.homeDir, this.taskId)));
    this.status = 'SUCCESS';
    this.persist();
    this.d.log.info({ taskId: this.taskId, bytes, pieces: this.pieces.length, fromSource: this.bytesFromSource }, 'cdn task done');
    this.emit('end', true);
  }
}
