import { redactUrl } from '../../shared/errors.js';
import { headerValue } from '../../shared/http/client.js';

/**
 * Why a CDN task failed, in Dragonfly's terms: 607 unreachable, 608 needs auth, 500 other.
 * LOCAL_STORAGE is our own disk, never the origin's fault; CANCELLED is a delete or a shutdown.
 */
export interface SourceFailure {
  dfCode: number;
  code:
    | 'SOURCE_NOT_FOUND'
    | 'SOURCE_AUTH'
    | 'SOURCE_UNREACHABLE'
    | 'SOURCE_BAD_STATUS'
    | 'SOURCE_CORRUPT'
    | 'LOCAL_STORAGE'
    | 'CANCELLED';
  message: string;
  upstreamStatus?: number;
  /** The origin's Retry-After, in ms, when it sent one. */
  retryAfterMs?: number;
}

/** What a fill's end counts as on /metrics (supernode_cdn_fills_total{result}). */
export type FillResult = 'success' | 'source_error' | 'storage_error' | 'cancelled';

export function fail(code: SourceFailure['code'], dfCode: number, message: string, upstreamStatus?: number): SourceFailure {
  return { code, dfCode, message, upstreamStatus };
}

export function isFailure(e: unknown): e is SourceFailure {
  return typeof e === 'object' && e !== null && 'dfCode' in e && 'code' in e;
}

/**
 * A write, open or rename on the supernode's own disk failed (ENOSPC, EDQUOT, EIO, EROFS, a
 * short write). Kept apart from origin errors so nobody blames the registry for a full disk,
 * and so it is never retried as if the origin had hiccuped.
 */
export class StorageError extends Error {
  constructor(what: string, cause?: unknown) {
    const c = cause as NodeJS.ErrnoException | undefined;
    super(c ? `${what}: ${c.code ?? c.message}` : what, cause === undefined ? undefined : { cause });
    this.name = 'StorageError';
  }
}

/** Run a file operation; any error it throws is the local disk's. */
export function onDisk<T>(what: string, p: Promise<T>): Promise<T> {
  return p.catch((err: unknown) => {
    throw err instanceof StorageError ? err : new StorageError(what, err);
  });
}

export function storageFailure(message: string): SourceFailure {
  return fail('LOCAL_STORAGE', 500, `supernode storage: ${message}`);
}

/** Anything run() caught, as the failure waiters and logs see. */
export function toFailure(err: unknown): SourceFailure {
  if (isFailure(err)) return err;
  if (err instanceof StorageError) return storageFailure(err.message);
  return fail('SOURCE_UNREACHABLE', 607, `source stream failed: ${(err as Error).message}`);
}

export function fillResult(f: SourceFailure | undefined): FillResult {
  if (!f) return 'success';
  if (f.code === 'LOCAL_STORAGE') return 'storage_error';
  if (f.code === 'CANCELLED') return 'cancelled';
  return 'source_error';
}

/** Statuses that say "not now" rather than "never": overload, a gateway's hiccup, a timeout. */
const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/**
 * Whether the same request may well work a moment later: a reset, a stall, a refused
 * connection or a 5xx/429 may; a 4xx, wrong content, our own disk or a cancel will not.
 */
export function isTransient(f: SourceFailure): boolean {
  if (f.code === 'SOURCE_UNREACHABLE') return true;
  return f.code === 'SOURCE_BAD_STATUS' && f.upstreamStatus !== undefined && TRANSIENT_STATUS.has(f.upstreamStatus);
}

/** Retry-After as delay-seconds or an HTTP-date, in ms; undefined when absent or unreadable. */
export function parseRetryAfter(v: string | string[] | undefined, now = Date.now()): number | undefined {
  const s = headerValue(v);
  if (!s) return undefined;
  if (/^\d+$/.test(s.trim())) return Number(s.trim()) * 1000;
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Messages reach peers, job views and logs: a signed URL's query or userinfo must not. */
export function statusFailure(status: number, fullUrl: string, retryAfter?: string | string[]): SourceFailure {
  const url = redactUrl(fullUrl);
  if (status === 404) return fail('SOURCE_NOT_FOUND', 607, `source answered 404 for ${url}`, status);
  if (status === 401 || status === 403 || status === 407) {
    return fail('SOURCE_AUTH', 608, `source answered ${status} for ${url}: authentication required`, status);
  }
  const f = fail('SOURCE_BAD_STATUS', 500, `source answered ${status} for ${url}`, status);
  const ms = parseRetryAfter(retryAfter);
  if (ms !== undefined) f.retryAfterMs = ms;
  return f;
}
