import { addPeer, isComplete, type PeerState, type SchedulerLimits, type TaskState } from './state.js';
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
 * window just past its stream head before all others; inside and outside the window the usual
 * order holds: rarest first, then nearest to the pieces it is already fetching, then chance.
 * The window is twice the download limit, so a streaming peer keeps its head busy while the
 * rarest-first order inside the window still spreads different pieces over the swarm.
 */
export const STREAM_WINDOW_FACTOR = 2;

function streamHead(peer: PeerState): number {
  let n = 0;
  while (peer.held.has(n)) n++;
  return n;
}

function candidates(task: TaskState, peer: PeerState, ctx: ScheduleContext): number[] {
  const nums: number[] = [];
  const seen = new Set<number>();
  const consider = (n: number) => {
    if (seen.has(n)) return;
    seen.add(n);
    if (!peer.held.has(n) && !peer.running.has(n)) nums.push(n);
  };
  for (const n of task.cdnPieces) consider(n);
  for (const [n, list] of task.holders) if (list.length > 0) consider(n);
  if (nums.length < 2) return nums;

  const head = streamHead(peer);
  const window = ctx.limits.peerDownLimit * STREAM_WINDOW_FACTOR;
  let centre = head;
  if (peer.running.size > 0) {
    let sum = 0;
    for (const n of peer.running.keys()) sum += n;
    centre = sum / peer.running.size;
  }
  const keyed = nums.map((n) => ({
    n,
    prio: peer.streaming && n < head + window ? 0 : 1,
    rare: task.holders.get(n)?.length ?? 0,
    dist: Math.abs(n - centre),
    tie: ctx.rand(),
  }));
  keyed.sort((a, b) => a.prio - b.prio || a.rare - b.rare || a.dist - b.dist || a.tie - b.tie);
  return keyed.map((k) => k.n);
}

function pickSource(task: TaskState, peer: PeerState, n: number, limits: SchedulerLimits): string | undefined {
  if (peer.clientErrorCount <= limits.failureCountLimit) {
    const list = task.holders.get(n);
    if (list && list.length > 0) {
      const start = task.cursor.get(n) ?? 0;
      for (let i = 0; i < list.length; i++) {
        const idx = (start + i) % list.length;
        const src = task.peers.get(list[idx]);
        if (!src || src === peer || src.down) continue;
        if (src.serviceErrorCount >= limits.eliminationLimit) continue;
        if ((peer.blacklist.get(src.cid) ?? 0) > 0) continue;
        if (src.load + 1 > limits.peerUpLimit) continue;
        task.cursor.set(n, idx + 1);
        return src.cid;
      }
    }
  }
  if (task.cdnPieces.has(n) && task.cdnLoad < limits.cdnTaskLoadLimit) return task.cdnCid;
  return undefined;
}

/**
 * Decide what `cid` should fetch next (Dragonfly's scheduler/manager.go, plus the streaming
 * window). Mutates `task` to record the assignments, so the caller must apply the returned
 * decision: every assigned piece is counted against the limits until it is reported.
 */
export function schedule(task: TaskState, cid: string, ctx: ScheduleContext): Decision {
  const { limits, now } = ctx;
  expireRunning(task, limits.pieceTimeoutMs, now);
  const peer = task.peers.get(cid) ?? addPeer(task, cid, now);
  peer.lastSeen = now;
  if (isComplete(task, peer)) return { kind: 'finish' };
  if (task.cdnStatus === 'failed') return { kind: 'fail', reason: 'the CDN could not fetch the source' };

  if (peer.running.size >= limits.peerDownLimit) return { kind: 'limited' };
  const pieces: Assignment[] = [];
  {
    for (const n of candidates(task, peer, ctx)) {
      if (peer.running.size >= limits.peerDownLimit) break;
      const src = pickSource(task, peer, n, limits);
      if (src === undefined) continue;
      peer.running.set(n, { src, at: now });
      if (src === task.cdnCid) {
        task.cdnLoad++;
        task.cdnLoadAt = now;
      } else {
        const s = task.peers.get(src);
        if (s) s.load++;
      }
      pieces.push({ pieceNum: n, src });
    }
  }
  return pieces.length > 0 ? { kind: 'pieces', pieces } : { kind: 'wait' };
}
