import { addPeer, markAvailable, syncFree, type PeerState, type Running, type TaskState } from './state.js';

/** What a peer reports about one piece it tried to fetch. */
export interface PieceReport {
  cid: string;
  pieceNum: number;
  /** The source it fetched from (a peer cid or the CDN cid). */
  src: string;
  ok: boolean;
  /** The source refused the fetch as busy (its uploader's slots were all taken): no failure. */
  busy?: boolean;
}

/** How long a requester leaves a source that refused it as busy (our uploader's Retry-After). */
export const BUSY_BACKOFF_MS = 1_000;

/** What applying a report changed, for metrics and logs at the edge. */
export interface ReportEffect {
  held: boolean;
  blacklisted: boolean;
  eliminated: boolean;
}

/**
 * Take `cid` off piece n's relay list. A run that ended without the piece also dooms every fetch
 * relayed from it (the relay cuts them off), so those leave the list too, down the chain: no one
 * may be sent to them, and the chain can never loop back through a fresh run of `cid`.
 */
function dropRelay(task: TaskState, n: number, cid: string, failed: boolean): void {
  const relays = task.relays.get(n);
  if (!relays) return;
  const i = relays.indexOf(cid);
  if (i >= 0) relays.splice(i, 1);
  if (failed) {
    for (const down of relays.filter((d) => task.peers.get(d)?.running.get(n)?.src === cid)) dropRelay(task, n, down, true);
  }
  if (relays.length === 0) task.relays.delete(n);
}

function release(task: TaskState, peer: PeerState, pieceNum: number, ok = false): Running | undefined {
  const run = peer.running.get(pieceNum);
  if (!run) return undefined;
  peer.running.delete(pieceNum);
  dropRelay(task, pieceNum, peer.cid, !ok);
  // The run got the piece, so the downstreams that failed on it were failed by this peer.
  if (ok) for (const cid of run.cut ?? []) {
    const down = task.peers.get(cid);
    if (down) blame(task, down, peer);
  }
  if (peer.have[pieceNum] === 2) peer.have[pieceNum] = 0;
  task.inflight[pieceNum] = Math.max(0, (task.inflight[pieceNum] ?? 0) - 1);
  if (run.src === task.cdnCid) {
    task.cdnLoad = Math.max(0, task.cdnLoad - 1);
    task.cdnInflight[pieceNum] = Math.max(0, (task.cdnInflight[pieceNum] ?? 0) - 1);
  }
  else {
    // Looked up by cid: removePeer releases the runs from a peer it already took out of the task.
    task.uploads.get(run.src)?.runs.delete(run);
    const src = task.peers.get(run.src);
    if (src) {
      src.load = Math.max(0, src.load - 1);
      syncFree(task, src);
    }
  }
  return run;
}

export function markHeld(task: TaskState, peer: PeerState, pieceNum: number): boolean {
  if (peer.held.has(pieceNum)) return false;
  // A peer that is already free counts as a free holder of its new piece at once; one that
  // becomes free now is counted for all its pieces by syncFree.
  if (peer.isFree) task.freeHolders[pieceNum] = (task.freeHolders[pieceNum] ?? 0) + 1;
  if (peer.isLive) task.liveHolders[pieceNum] = (task.liveHolders[pieceNum] ?? 0) + 1;
  peer.held.add(pieceNum);
  peer.have[pieceNum] = 1;
  task.holderCount[pieceNum] = (task.holderCount[pieceNum] ?? 0) + 1;
  const list = task.holders.get(pieceNum);
  if (list) list.push(peer.cid);
  else task.holders.set(pieceNum, [peer.cid]);
  syncFree(task, peer);
  markAvailable(task, pieceNum);
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
  // A report names the source it fetched from; one for a run the supernode already took back and
  // handed out again (another source) must not end the newer run.
  const current = peer.running.get(r.pieceNum);
  const assigned = !current || !r.src || r.src === current.src ? release(task, peer, r.pieceNum, r.ok) : undefined;
  const src = r.src || assigned?.src || '';
  // Whether the supernode sent this peer to `src` for this piece: the run just ended, or one it
  // took back unreported. Only then may a failure count against the source.
  const sent = assigned !== undefined ? assigned.src === src : peer.taken.get(r.pieceNum) === src;
  peer.taken.delete(r.pieceNum);
  const srcPeer = src === task.cdnCid ? undefined : task.peers.get(src);
  // A busy source is healthy but serving uploads this supernode did not assign (another
  // supernode's tasks, or runs it already took back): blaming it would blacklist a good peer for
  // the rest of the task and count towards its elimination. It is left alone for a moment.
  if (r.busy) {
    if (srcPeer && srcPeer !== peer) peer.busyUntil.set(src, now + BUSY_BACKOFF_MS);
    return effect;
  }
  if (r.ok) {
    // Only a piece the CDN has cut has a digest to hand out with it. A success for any other
    // piece (a forged /peer/piece/suc, or one fetched elsewhere) would make the reporter its
    // source while every copy it sends goes out unverifiable, so it is not taken as held.
    if (!task.cdnPieces.has(r.pieceNum)) return effect;
    effect.held = markHeld(task, peer, r.pieceNum);
    if (srcPeer && sent) {
      // A complete peer has no reason to call; serving a piece is how it shows it is still there.
      srcPeer.lastSeen = Math.max(srcPeer.lastSeen, now);
      srcPeer.serviceErrorCount = 0;
      peer.clientErrorCount = 0;
      // The reset may bring an eliminated source back: isLive, isFree and the holder counts follow.
      syncFree(task, srcPeer);
    }
    return effect;
  }
  if (!srcPeer || srcPeer === peer) return effect;
  // No run of this peer's fetched from `src` (it left, registered again and is a new peer now,
  // or the report is made up): the reporter counts it against itself and keeps off `src`, and
  // `src` is charged nothing.
  if (!sent) {
    distrust(peer, src);
    return effect;
  }
  // A cut-through source cuts its downstream off when its own fetch fails, which says nothing
  // about it, and the two reports race. So a relay that lacks the piece is judged by how the run
  // the downstream relayed ends: already gone (or replaced) means it failed, and the downstream is
  // excused; still going, the failure is noted on the run (which keeps this downstream off it)
  // and counted only if the run ends with the piece (release).
  if (assigned !== undefined && assigned.depth > 0 && assigned.src === src && !srcPeer.held.has(r.pieceNum)) {
    const relayRun = srcPeer.running.get(r.pieceNum);
    if (relayRun === undefined || relayRun !== assigned.up) return effect;
    (relayRun.cut ??= new Set()).add(peer.cid);
    strike(srcPeer, now);
    return effect;
  }
  blame(task, peer, srcPeer);
  effect.blacklisted = true;
  effect.eliminated = srcPeer.serviceErrorCount === limits.eliminationLimit;
  return effect;
}

/**
 * A downstream failed on one of `relay`'s runs that goes on. Counted since the first such failure
 * the relay has not outlived: one seen since (a call, a piece served) has shown it is there.
 */
function strike(relay: PeerState, now: number): void {
  if (relay.cutStrikes === 0 || relay.lastSeen > relay.cutSince) {
    relay.cutStrikes = 0;
    relay.cutSince = now;
  }
  relay.cutStrikes++;
}

/** `peer` failed to fetch from `src`: count it on both and keep `peer` off `src` from now on. */
function blame(task: TaskState, peer: PeerState, src: PeerState): void {
  distrust(peer, src.cid);
  src.serviceErrorCount++;
  syncFree(task, src);
}

/** The reporter's side of a failed fetch: it counts against itself and keeps off `src`. */
function distrust(peer: PeerState, src: string): void {
  peer.clientErrorCount++;
  peer.blacklist.set(src, (peer.blacklist.get(src) ?? 0) + 1);
}

/** /peer/service/down: the peer stops serving; what it was fetching is released. */
export function markDown(task: TaskState, cid: string, now: number): boolean {
  const peer = task.peers.get(cid);
  if (!peer) return false;
  peer.down = true;
  peer.downAt = now;
  for (const n of [...peer.running.keys()]) release(task, peer, n);
  syncFree(task, peer);
  return true;
}

/**
 * The peer leaves the task: what it was fetching is released, and so are the fetches others were
 * sent to it for. Those are over as far as the scheduler goes, charged to no one: left in place,
 * a new registration under the same cid would have their releases taken off its own upload count
 * and their failures blamed on it.
 */
export function removePeer(task: TaskState, cid: string): void {
  const peer = task.peers.get(cid);
  if (!peer) return;
  for (const n of [...peer.running.keys()]) release(task, peer, n);
  peer.down = true;
  syncFree(task, peer);
  for (const n of peer.held) {
    const list = task.holders.get(n);
    if (list) {
      const i = list.indexOf(cid);
      if (i >= 0) {
        list.splice(i, 1);
        task.holderCount[n]--;
      }
    }
  }
  task.peers.delete(cid);
  for (const other of task.peers.values()) {
    for (const [n, run] of other.running) if (run.src === cid) release(task, other, n);
    for (const [n, src] of other.taken) if (src === cid) other.taken.delete(n);
  }
}

/**
 * A registration. A peer that went down (/peer/service/down: our dfdaemon sends it when it
 * evicts the file) and registers again holds none of what it had: it comes back as a new peer,
 * or the scheduler would count it complete, or a source, for pieces it no longer has.
 */
export function joinPeer(task: TaskState, cid: string, now: number, streaming = false, relay = false): PeerState {
  if (task.peers.get(cid)?.down) removePeer(task, cid);
  return addPeer(task, cid, now, streaming, relay);
}

/**
 * Take back assignments that were never reported, so loads cannot leak forever. Sweeping every
 * peer is O(peers), so it runs at most once per tenth of the timeout.
 */
export function expireRunning(task: TaskState, timeoutMs: number, now: number): number {
  if (now - task.lastExpire < timeoutMs / 10) return 0;
  task.lastExpire = now;
  let expired = 0;
  for (const peer of task.peers.values()) {
    for (const [n, run] of peer.running) {
      if (now - run.at >= timeoutMs) {
        release(task, peer, n);
        if (run.src !== task.cdnCid) rememberTaken(peer, n, run.src);
        expired++;
      }
    }
  }
  return expired;
}

/** Taken-back runs a peer may still report on; the oldest go first past this many. */
export const TAKEN_MAX = 64;

function rememberTaken(peer: PeerState, n: number, src: string): void {
  peer.taken.delete(n);
  peer.taken.set(n, src);
  if (peer.taken.size > TAKEN_MAX) peer.taken.delete(peer.taken.keys().next().value!);
}

export function cdnPieceReady(task: TaskState, pieceNum: number): void {
  task.cdnPieces.add(pieceNum);
  markAvailable(task, pieceNum);
}

export function cdnFinished(task: TaskState, ok: boolean, pieceCount: number): void {
  task.cdnStatus = ok ? 'success' : 'failed';
  if (ok) task.pieceCount = pieceCount;
}
