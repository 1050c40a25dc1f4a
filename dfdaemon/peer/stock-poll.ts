import { PeerStatus, PieceResult } from '../../shared/protocol/codes.js';
import type { TaskQuery, WirePiece } from './supernode-wire.js';

/**
 * Stock dfget's pause after a 602 (wait): 50-100 ms, doubling with each 602 in a row up to
 * 800-1600 ms. A stock supernode answers at once, so without it a peer polls as fast as the
 * round trip allows.
 */
export class WaitBackoff {
  private step = 0;

  constructor(private readonly rand: () => number = Math.random) {}

  next(): number {
    const base = 50 * 2 ** Math.min(this.step, 4);
    this.step++;
    return base + Math.floor(this.rand() * base);
  }

  reset(): void {
    this.step = 0;
  }
}

/** What a finished piece fetch tells the supernode with the next /peer/task. */
export interface PieceReport {
  piece: WirePiece;
  ok: boolean;
  busy?: boolean;
  /** A stock supernode already took the piece through /peer/piece/suc: report it semi-success. */
  recorded?: boolean;
}

/**
 * A /peer/task query a stock supernode takes. It reads every status 701 as a piece result and
 * answers 501 to one without a range, and it does not long-poll. So, like dfget: status 700
 * until the first piece; after that every request carries a piece result, and one with nothing
 * new to say repeats the last success as semi-success, which the supernode has already applied.
 * With no success yet, 700 asks again without touching any piece's state.
 */
export function stockQuery(taskId: string, cid: string, report: PieceReport | undefined, lastOk: WirePiece | undefined): TaskQuery {
  if (report) {
    const result = !report.ok ? PieceResult.Fail : report.recorded ? PieceResult.SemiSuccess : PieceResult.Success;
    return { taskId, srcCid: cid, status: PeerStatus.Running, range: report.piece.range, result, dstCid: report.piece.cid };
  }
  if (lastOk) return { taskId, srcCid: cid, status: PeerStatus.Running, range: lastOk.range, result: PieceResult.SemiSuccess, dstCid: lastOk.cid };
  return { taskId, srcCid: cid, status: PeerStatus.Start };
}
