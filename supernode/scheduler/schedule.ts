import { addPeer, hostLoad, isComplete, mayUpload, syncFree, type PeerState, type Running, type SchedulerLimits, type TaskState } from './state.js';
import { expireRunning } from './progress.js';

export interface Assignment {
  pieceNum: number;
  /** The cid to fetch from: another peer, or the task's CDN cid. */
  src: string;
}

export type Decision =
  | { kind: 'finish' }
  | { kind: 'fail'; reason: string }
  | { kind: 'wait' }
  /** The peer already runs peerDownLimit pieces. */
  | { kind: 'limited' }
  | { kind: 'pieces'; pieces: Assignment[] };

export interface ScheduleContext {
  limits: SchedulerLimits;
  now: number;
  /** Injected so tests and benchmarks are deterministic. */
  rand: () => number;
}

/**
 * Streaming policy. A streaming peer (our dfdaemon feeding Docker in order) ranks pieces in a
 * window just past its stream head (twice peerDownLimit wide) before all others, but only for
 * half of its download slots; the other half always go rarest-first over the whole file.
 * Inside and outside the window the usual order holds: rarest first, then nearest to the
 * pieces it is already fetching, then chance. The head half keeps Docker's stream fed; the
 * rarest half keeps new pieces flowing into the swarm, so swarm completion does not suffer
 * when every peer streams (bench/scheduler measures both effects).
 */
export const STREAM_WINDOW_FACTOR = 2;

function streamHead(peer: PeerState): number {
  let n = 0;
  while (peer.have[n] === 1) n++;
  return n;
}

// Sort keys pack (relay-only and window priority, holders, distance, random tie, piece number)
// into one float (below 2^53) so a native numeric sort orders candidates without a comparator
// or objects.
const N_BITS = 65536;
const TIE = 256;
const DIST = 4096;
const RARE = 16384;

/**
 * Whether the CDN may hand out piece n now. The supernode's uplink is one host's link: every
 * copy it sends that a peer could have sent instead is time the whole swarm loses (Dragonfly
 * users saw "pieces always come from the supernode", dragonfly-archived #681). So the CDN
 * seeds: it sends a piece only while no live peer holds it and no other CDN copy of it is on
 * its way; after that the piece spreads peer to peer. A client past failureCountLimit may not
 * use peers and gets everything from the CDN. Once the fetch is done, see pickSource.
 */
function cdnMay(task: TaskState, peer: PeerState, n: number, peersOk: boolean, now: number, limits: SchedulerLimits): boolean {
  if (!task.cdnPieces.has(n)) return false;
  return !peersOk || task.cdnStatus === 'success' || (noUsableHolder(task, peer, n, now) && !cdnCopyOnItsWay(task, n, now, limits));
}

/**
 * No live holder of n is one this requester may fetch from: there is none, or it blacklisted
 * them all, or they refused it as busy moments ago. The same rule as pickSource's, so such a
 * piece is offered from the CDN even while its holders are at their upload cap; waiting for
 * their slots would gain the requester nothing, and a holder busy with uploads this supernode
 * does not know of may stay busy for long. Holders are only walked for a requester with a
 * blacklist or a back-off, which is rare.
 */
function noUsableHolder(task: TaskState, peer: PeerState, n: number, now: number): boolean {
  if ((task.liveHolders[n] ?? 0) === 0) return true;
  if (peer.blacklist.size === 0 && peer.busyUntil.size === 0) return false;
  for (const cid of task.holders.get(n) ?? []) {
    const h = task.peers.get(cid);
    if (h && h !== peer && h.isLive && (peer.blacklist.get(cid) ?? 0) === 0 && !isBusyFor(peer, cid, now)) return false;
  }
  return true;
}

/**
 * A CDN copy of n is in flight and young enough to trust; a slow or dead one gets company. A
 * piece takes well under a second on any link this runs on, and a report lost on the way (the
 * peer died, or its request was cut) would otherwise hold the piece back from every peer.
 */
function cdnCopyOnItsWay(task: TaskState, n: number, now: number, limits: SchedulerLimits): boolean {
  return (task.cdnInflight[n] ?? 0) > 0 && now - (task.cdnInflightAt[n] ?? 0) < Math.min(CDN_COPY_GRACE_MS, limits.pieceTimeoutMs / 3);
}

export const CDN_COPY_GRACE_MS = 2_000;

/**
 * Pieces this peer lacks that someone could hand out right now, best first. A piece whose
 * holders are all busy, and that the CDN may not send, is left out without looking at any
 * holder: in a saturated swarm most requests end with an empty list, and that stays cheap.
 */
function candidates(task: TaskState, peer: PeerState, ctx: ScheduleContext, cdnOpen: boolean, peersOk: boolean): Float64Array {
  const keys = new Float64Array(task.avail.length);
  let k = 0;
  const head = peer.streaming ? streamHead(peer) : 0;
  const window = ctx.limits.peerDownLimit * STREAM_WINDOW_FACTOR;
  let centre = head;
  if (peer.running.size > 0) {
    let sum = 0;
    for (const n of peer.running.keys()) sum += n;
    centre = sum / peer.running.size;
  }
  let inWindow = 0;
  if (peer.streaming) for (const n of peer.running.keys()) if (n >= head && n < head + window) inWindow++;
  const useWindow = peer.streaming && inWindow < Math.ceil(ctx.limits.peerDownLimit / 2);
  const relayOk = peersOk && relaysRunning(peer) < relaySlots(ctx.limits);
  const have = peer.have;
  const counts = task.holderCount;
  const free = task.freeHolders;
  // The requester itself is never one of the free holders of a piece it lacks.
  for (const n of task.avail) {
    if (have[n]) continue;
    // A relayed piece arrives no faster than its upstream receives it, so it holds a download
    // slot longer than a whole copy would: relay-only pieces rank after every piece someone can
    // send whole, and fill only the slots those leave.
    let relayOnly = 0;
    if (!(peersOk && (free[n] ?? 0) > 0) && !(cdnOpen && cdnMay(task, peer, n, peersOk, ctx.now, ctx.limits))) {
      if (!relayOk || (task.inflight[n] ?? 0) === 0 || pickRelay(task, peer, n, ctx.limits, ctx.now) === undefined) continue;
      relayOnly = 2;
    }
    const prio = relayOnly + (useWindow && n < head + window ? 0 : 1);
    // Copies on their way count as holders-to-be, so peers asking at the same moment spread over
    // different pieces instead of all queueing on the newest one's first holder.
    const rare = Math.min(RARE - 1, (counts[n] ?? 0) + (task.inflight[n] ?? 0));
    const dist = Math.min(DIST - 1, Math.round(Math.abs(n - centre)));
    const tie = Math.floor(ctx.rand() * TIE);
    keys[k++] = (((prio * RARE + rare) * DIST + dist) * TIE + tie) * N_BITS + n;
  }
  return keys.subarray(0, k).sort();
}

/**
 * Cut-through: a peer still receiving piece n passes it on as it arrives, so a new piece spreads
 * in about one hop's time instead of one whole store-and-forward transfer per hop. Only our own
 * peers do this (they verify every piece before storing or reporting it, and a relay whose own
 * fetch fails cuts its downstream off). The shallowest, least loaded relay wins; chains are
 * capped at relayDepth hops because one failure ends every fetch below it.
 */
function pickRelay(task: TaskState, peer: PeerState, n: number, limits: SchedulerLimits, now: number): string | undefined {
  if (limits.relayDepth <= 0) return undefined;
  const list = task.relays.get(n);
  if (!list) return undefined;
  let best: PeerState | undefined;
  let bestDepth = Infinity;
  for (const cid of list) {
    const r = task.peers.get(cid);
    // isLive is only kept for holders; a relay may hold nothing yet.
    if (!r || r === peer || r.down || r.serviceErrorCount >= limits.eliminationLimit || !mayUpload(r, limits, now) || (peer.blacklist.get(cid) ?? 0) > 0 || isBusyFor(peer, cid, now)) continue;
    const cut = r.running.get(n)?.cut;
    if (relaySuspect(r) || (cut && (cut.has(peer.cid) || cut.size >= RELAY_CUT_LIMIT))) continue;
    const depth = relayDepthOf(task, r, n, peer, limits.relayDepth);
    if (depth < 0) continue;
    if (depth < bestDepth || (depth === bestDepth && r.load < best!.load)) {
      best = r;
      bestDepth = depth;
    }
  }
  return best?.cid;
}

/**
 * Downstream failures a relay run, or a relay with no sign of life since, may cause before no one
 * else is sent to it. Such failures are excused while the run goes on (its own fetch may have
 * failed, and it cut them off), so a relay that vanished without /peer/service/down would be
 * offered until its runs time out (pieceTimeoutMs), failing everyone sent to it.
 */
export const RELAY_CUT_LIMIT = 2;

/** Downstreams keep failing on this relay's runs and it has not called or served since. */
function relaySuspect(r: PeerState): boolean {
  return r.cutStrikes >= RELAY_CUT_LIMIT && r.lastSeen <= r.cutSince;
}

/**
 * Relay hops between r and a whole copy of n (0: r fetches from a holder or the CDN), walked
 * live rather than read from r's record, or -1 when r may not pass n on: the chain is at least
 * `limit` deep, an upstream's run is no longer the one r relays (so r's fetch is being cut off),
 * or the chain passes through the requester (it would wait on itself).
 */
function relayDepthOf(task: TaskState, r: PeerState, n: number, requester: PeerState, limit: number): number {
  let cur = r;
  for (let d = 0; d < limit; d++) {
    const run = cur.running.get(n);
    if (!run) return -1;
    if (run.src === task.cdnCid) return d;
    const up = task.peers.get(run.src);
    if (!up || up === requester || up.down) return -1;
    if (up.held.has(n)) return d;
    if (up.running.get(n) !== run.up) return -1;
    cur = up;
  }
  return -1;
}

/** Download slots a peer may give to relayed pieces: the rest stay for whole copies. */
function relaySlots(limits: SchedulerLimits): number {
  return Math.max(1, Math.floor(limits.peerDownLimit / 2));
}

function relaysRunning(peer: PeerState): number {
  let k = 0;
  for (const run of peer.running.values()) if (run.depth > 0) k++;
  return k;
}

/**
 * A source for piece n: a free holder, found from a rotating cursor so uploads spread over
 * holders. If every live holder is one this requester has blacklisted, the CDN stands in for
 * them; otherwise the CDN only seeds (see cdnMay). Failing both, a peer still receiving n
 * (pickRelay).
 */
function pickSource(task: TaskState, peer: PeerState, n: number, limits: SchedulerLimits, peersOk: boolean, now: number): string | undefined {
  let usable = false;
  if (peersOk && (task.liveHolders[n] ?? 0) > 0) {
    const list = task.holders.get(n) ?? [];
    const start = task.cursor.get(n) ?? 0;
    for (let i = 0; i < list.length; i++) {
      const idx = (start + i) % list.length;
      const src = task.peers.get(list[idx]);
      if (!src || src === peer || !src.isLive || (peer.blacklist.get(src.cid) ?? 0) > 0 || isBusyFor(peer, src.cid, now)) continue;
      if (src.load + 1 > limits.peerUpLimit) {
        usable = true;
        continue;
      }
      // Full with other tasks' uploads: no release in this task would wake a wait for it, so, like
      // a holder busy with uploads this supernode does not know of, it leaves the piece to others.
      if (hostLoad(src, now, limits.pieceTimeoutMs) + 1 > limits.peerUpLimit) continue;
      usable = true;
      task.cursor.set(n, idx + 1);
      return src.cid;
    }
  }
  // Once the whole file is fetched, the uplink that carried the seeding stream is free: the CDN
  // stands in for holders that are all busy (they were tried first), up to its load cap. This is
  // what shortens a swarm's tail, where the last pieces have one or two holders each.
  const cdnCan = task.cdnLoad < limits.cdnTaskLoadLimit && task.cdnPieces.has(n);
  if (cdnCan && (!peersOk || task.cdnStatus === 'success' || (!usable && !cdnCopyOnItsWay(task, n, now, limits)))) return task.cdnCid;
  return peersOk ? pickRelay(task, peer, n, limits, now) : undefined;
}

/**
 * Milliseconds until the first of `peer`'s busy back-offs ends, when it has any: a "wait" it got
 * may turn into pieces then, with nothing else in the swarm changing.
 */
export function busyWakeIn(peer: PeerState, now: number): number | undefined {
  let first = Infinity;
  for (const until of peer.busyUntil.values()) if (until > now) first = Math.min(first, until - now);
  return first === Infinity ? undefined : first;
}

/**
 * `src` refused `peer` as busy less than BUSY_BACKOFF_MS ago: for that long it is no source for
 * `peer`, as if blacklisted.
 */
function isBusyFor(peer: PeerState, src: string, now: number): boolean {
  if (peer.busyUntil.size === 0) return false;
  const until = peer.busyUntil.get(src);
  if (until === undefined) return false;
  if (until > now) return true;
  peer.busyUntil.delete(src);
  return false;
}

/**
 * Decide what `cid` should fetch next (Dragonfly's scheduler/manager.go, plus the streaming
 * window). Mutates `task` to record the assignments, so the caller must apply the returned
 * decision: every assigned piece is counted against the limits until it is reported.
 */
export function schedule(task: TaskState, cid: string, ctx: ScheduleContext): Decision {
  const { limits, now } = ctx;
  task.upLimit = limits.peerUpLimit;
  task.elimLimit = limits.eliminationLimit;
  expireRunning(task, limits.pieceTimeoutMs, now);
  const peer = task.peers.get(cid) ?? addPeer(task, cid, now);
  peer.lastSeen = now;
  if (isComplete(task, peer)) return { kind: 'finish' };
  if (task.cdnStatus === 'failed') return { kind: 'fail', reason: 'the CDN could not fetch the source' };
  if (peer.running.size >= limits.peerDownLimit) return { kind: 'limited' };

  // Past failureCountLimit a client gets everything from the CDN.
  const peersOk = peer.clientErrorCount <= limits.failureCountLimit;
  const pieces: Assignment[] = [];
  for (const key of candidates(task, peer, ctx, task.cdnLoad < limits.cdnTaskLoadLimit, peersOk)) {
    if (peer.running.size >= limits.peerDownLimit) break;
    const n = key % N_BITS;
    const src = pickSource(task, peer, n, limits, peersOk, now);
    if (src === undefined) continue;
    const upstream = src === task.cdnCid ? undefined : task.peers.get(src)!;
    const up = upstream && !upstream.held.has(n) ? upstream.running.get(n) : undefined;
    if (up && relaysRunning(peer) >= relaySlots(limits)) continue;
    const run: Running = up ? { src, at: now, depth: relayDepthOf(task, upstream!, n, peer, limits.relayDepth) + 1, up } : { src, at: now, depth: 0 };
    peer.running.set(n, run);
    peer.have[n] = 2;
    if (peer.relay && limits.relayDepth > 0) {
      const relays = task.relays.get(n);
      if (relays) relays.push(cid);
      else task.relays.set(n, [cid]);
    }
    task.inflight[n] = (task.inflight[n] ?? 0) + 1;
    if (src === task.cdnCid) {
      task.cdnLoad++;
      task.cdnInflight[n] = (task.cdnInflight[n] ?? 0) + 1;
      task.cdnInflightAt[n] = now;
    } else {
      upstream!.load++;
      upstream!.host.runs.add(run);
      syncFree(task, upstream!);
    }
    pieces.push({ pieceNum: n, src });
  }
  return pieces.length > 0 ? { kind: 'pieces', pieces } : { kind: 'wait' };
}
