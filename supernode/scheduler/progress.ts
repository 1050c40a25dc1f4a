import type { PeerState, TaskState } from './state.js';

/** What a peer reports about one piece it tried to fetch. */
export interface PieceReport {
  cid: string;
  pieceNum: number;
  /** The source it fetched from (a peer cid or the CDN cid). */
  src: string;
  ok: boolean;
}

/** What applying a report changed, for metrics and logs at the edge. */
export interface ReportEffect {
  held: boolean;
  blacklisted: boolean;
  eliminated: boolean;
}

function release(task: TaskState, peer: PeerState, pieceNum: number): string | undefined {
  const run = peer.running.get(pieceNum);
  if (!run) return undefined;
  peer.running.delete(pieceNum);
  if (run.src === task.cdnCid) task.cdnLoad = Math.max(0, task.cdnLoad - 1);
  else {
    const src = task.peers.get(run.src);
    if (src) src.load = Math.max(0, src.load - 1);
  }
  return run.src;
}

export function markHeld(task: TaskState, peer: PeerState, pieceNum: number): boolean {
  if (peer.held.has(pieceNum)) return false;
  peer.held.add(pieceNum);
  const list = task.holders.get(pieceNum);
  if (list) list.push(peer.cid);
  else task.holders.set(pieceNum, [peer.cid]);
  return true;
}

/**
 * Apply a piece result (Dragonfly's progress_util.go). Failure counting is peer-to-peer only:
 * a failed fetch from the CDN says nothing about the requester or another peer.
 */
export function applyReport(task: TaskState, r: PieceReport, limits: { eliminationLimit: number }, now: number): ReportEffect {
  const effect: ReportEffect = { held: false, blacklisted: false, eliminated: false };
  const peer = task.peers.get(r.cid);
  if (!peer) return effect;
  peer.lastSeen = now;
  const assigned = release(task, peer, r.pieceNum);
  const src = r.src || assigned || '';
  const srcPeer = src === task.cdnCid ? undefined : task.peers.get(src);
  if (r.ok) {
    effect.held = markHeld(task, peer, r.pieceNum);
    if (srcPeer) {
      srcPeer.serviceErrorCount = 0;
      peer.clientErrorCount = 0;
    }
    return effect;
  }
  if (srcPeer && srcPeer !== peer) {
    peer.clientErrorCount++;
    srcPeer.serviceErrorCount++;
    peer.blacklist.set(src, (peer.blacklist.get(src) ?? 0) + 1);
    effect.blacklisted = true;
    effect.eliminated = srcPeer.serviceErrorCount === limits.eliminationLimit;
  }
  return effect;
}

/** /peer/service/down: the peer stops serving; what it was fetching is released. */
export function markDown(task: TaskState, cid: string, now: number): boolean {
  const peer = task.peers.get(cid);
  if (!peer) return false;
  peer.down = true;
  peer.downAt = now;
  for (const n of [...peer.running.keys()]) release(task, peer, n);
  return true;
}

export function removePeer(task: TaskState, cid: string): void {
  const peer = task.peers.get(cid);
  if (!peer) return;
  for (const n of [...peer.running.keys()]) release(task, peer, n);
  for (const n of peer.held) {
    const list = task.holders.get(n);
    if (list) {
      const i = list.indexOf(cid);
      if (i >= 0) list.splice(i, 1);
    }
  }
  task.peers.delete(cid);
}

/** Take back assignments that were never reported, so loads cannot leak forever. */
export function expireRunning(task: TaskState, timeoutMs: number, now: number): number {
  let expired = 0;
  for (const peer of task.peers.values()) {
    for (const [n, run] of peer.running) {
      if (now - run.at >= timeoutMs) {
        release(task, peer, n);
        expired++;
      }
    }
  }
  return expired;
}

export function cdnPieceReady(task: TaskState, pieceNum: number): void {
  task.cdnPieces.add(pieceNum);
}

export function cdnFinished(task: TaskState, ok: boolean, pieceCount: number): void {
  task.cdnStatus = ok ? 'success' : 'failed';
  if (ok) task.pieceCount = pieceCount;
}
