import type { PieceCheck } from '../cdn/recheck.js';

export type { PieceCheck };

/**
 * Re-reads a piece of the CDN's copy against its recorded digest. The CDN drops a task it finds
 * corrupt or missing, so the next registration fetches it from the origin again.
 */
export interface PieceChecker {
  recheckPiece(taskId: string, pieceNum: number): Promise<PieceCheck>;
}

/** A piece found fine is not read again for this long, however many peers fail it. */
export const RECHECK_INTERVAL_MS = 10_000;

/**
 * Decides when a piece peers failed to get from the CDN is worth re-reading. A bad CDN piece
 * fails every peer it goes to, each of them many times a second, so without a bound each report
 * would read the piece again: one check per task runs at a time, and one piece is checked at
 * most once per interval.
 */
export class CdnRepair {
  private readonly running = new Set<string>();
  private readonly checkedAt = new Map<string, number>();
  private pruneAt = 1024;

  constructor(
    private readonly checker: PieceChecker,
    private readonly now: () => number,
    private readonly intervalMs = RECHECK_INTERVAL_MS,
  ) {}

  /** Re-check piece n of the task unless a bound says not now; undefined when skipped. */
  suspect(taskId: string, n: number): Promise<PieceCheck> | undefined {
    if (this.running.has(taskId)) return undefined;
    const now = this.now();
    const key = `${taskId}:${n}`;
    const at = this.checkedAt.get(key);
    if (at !== undefined && now - at < this.intervalMs) return undefined;
    this.prune(now);
    this.checkedAt.set(key, now);
    this.running.add(taskId);
    let check: Promise<PieceCheck>;
    try {
      check = this.checker.recheckPiece(taskId, n);
    } catch {
      check = Promise.resolve('unknown');
    }
    // A check that cannot tell changes nothing: the peers keep reporting, and it runs again later.
    return check
      .catch((): PieceCheck => 'unknown')
      .finally(() => this.running.delete(taskId));
  }

  /** Forget checks older than the interval once there are many, so the map stays small. */
  private prune(now: number): void {
    if (this.checkedAt.size < this.pruneAt) return;
    for (const [key, at] of this.checkedAt) if (now - at >= this.intervalMs) this.checkedAt.delete(key);
    this.pruneAt = Math.max(1024, this.checkedAt.size * 2);
  }
}
