import { isTransient, type SourceFailure } from './failure.js';

export interface RetryPolicy {
  /** Failures in a row, with no new piece between them, after which the task fails. */
  attempts: number;
  /** The first wait; it doubles with each failure in a row. */
  baseMs: number;
  /** The longest wait, an origin's Retry-After included: one asking for longer ends the task. */
  maxWaitMs: number;
  /** Retries over the task's whole life, progress or not, so a flapping origin ends too. */
  maxTotal: number;
}

/**
 * Three retries, 1 s, 2 s and 4 s apart. A reset or a 503 is answered a second later, and a
 * stall (cut after the source idle timeout, 15 s) plus one wait still comes well inside the
 * 30 s a dfdaemon gives a swarm without progress, so peers stay on the CDN instead of each
 * going to the origin. Three failures in a row with nothing delivered between them (~7 s of
 * waiting, or ~50 s of stalls) mean the origin is down, not hiccuping: the peers then fetch
 * it themselves, as before. A failure after new pieces starts the count again; ten in all end it.
 */
export const DEFAULT_RETRY: RetryPolicy = { attempts: 3, baseMs: 1000, maxWaitMs: 10_000, maxTotal: 10 };

/** How long to wait before trying again after `f`, or undefined to give up. */
export function retryDelay(f: SourceFailure, inARow: number, total: number, p: RetryPolicy): number | undefined {
  if (!isTransient(f) || inARow > p.attempts || total > p.maxTotal) return undefined;
  const wait = Math.max(p.baseMs * 2 ** (inARow - 1), f.retryAfterMs ?? 0);
  return wait > p.maxWaitMs ? undefined : wait;
}
