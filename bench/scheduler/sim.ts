// A discrete-event swarm: N peers on one task, every piece transfer takes a simulated time, and
// the real scheduler code decides every assignment. Simulated time measures swarm behaviour;
// process CPU time measures the scheduler's own cost.
import { addPeer, applyReport, cdnFinished, cdnPieceReady, newTask, schedule, type SchedulerLimits, type TaskState } from '../../supernode/scheduler/index.js';

export interface SimOptions {
  peers: number;
  pieces: number;
  limits: SchedulerLimits;
  streaming: boolean;
  /** Simulated ms one piece transfer takes. */
  pieceMs: number;
  /** Replace the real scheduler with a naive baseline: every piece from the CDN, in order. */
  naive?: boolean;
  /** Waiting peers re-ask every pieceMs/4 (stock dfget polling) instead of being woken. */
  poll?: boolean;
  seed?: number;
}

export interface SimResult {
  assignments: number;
  scheduleCalls: number;
  cpuMs: number;
  simMs: number;
  fromCdn: number;
  /** Mean simulated ms a piece waited after arriving before everything before it had arrived. */
  meanStreamLagMs: number;
  /** Mean simulated ms until a peer could stream its first 8 pieces in order. */
  meanHeadMs: number;
  /** Heap held by the scheduler state once every peer has every piece (needs --expose-gc). */
  stateHeapMB: number;
}

class Heap<T> {
  private a: { k: number; v: T }[] = [];
  get size(): number {
    return this.a.length;
  }
  clear(): void {
    this.a = [];
  }
  push(k: number, v: T): void {
    const a = this.a;
    a.push({ k, v });
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p].k <= a[i].k) break;
      [a[p], a[i]] = [a[i], a[p]];
      i = p;
    }
  }
  pop(): { k: number; v: T } {
    const a = this.a;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l].k < a[m].k) m = l;
        if (r < a.length && a[r].k < a[m].k) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i], a[m]];
        i = m;
      }
    }
    return top;
  }
}

function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LONG_POLL_MS = 1_000;
const WAKE_PER_CHANGE = 6;

type Ev = { kind: 'done'; cid: string; piece: number; src: string } | { kind: 'ask'; cid: string } | { kind: 'timeout'; cid: string; token: number };

export function simulate(o: SimOptions): SimResult {
  const rand = mulberry32(o.seed ?? 1);
  const task: TaskState = newTask('bench', 'cdn');
  task.pieceCount = o.pieces;
  for (let n = 0; n < o.pieces; n++) cdnPieceReady(task, n);
  cdnFinished(task, true, o.pieces);
  const events = new Heap<Ev>();
  const arrived = new Map<string, number[]>();
  const cids: string[] = [];
  for (let i = 0; i < o.peers; i++) {
    const cid = `peer-${i}`;
    cids.push(cid);
    addPeer(task, cid, 0, o.streaming);
    arrived.set(cid, new Array(o.pieces).fill(-1));
    events.push(rand() * o.pieceMs, { kind: 'ask', cid });
  }
  let assignments = 0;
  let calls = 0;
  let fromCdn = 0;
  let now = 0;
  // A set, not a counter: a polling peer can have several asks queued when it completes, and
  // each is answered 'finish'; counting answers ended the run before every peer was done.
  const finished = new Set<string>();
  // Waiting peers park like a long-poll on our supernode: woken FIFO by a change, or they ask
  // again when the poll times out.
  const parked = new Map<string, number>();
  const queue: string[] = [];
  let token = 0;
  let head = 0;
  const kinds: Record<string, number> = {};
  // CPU of the whole event loop: the scheduler plus the simulation's own bookkeeping, so the
  // rate is a lower bound for the scheduler alone.
  const cpu0 = process.cpuUsage();

  const ask = (cid: string) => {
    calls++;
    const d = o.naive ? naive(task, cid, o.limits) : schedule(task, cid, { limits: o.limits, now, rand });
    if (d.kind === 'finish') {
      finished.add(cid);
      return;
    }
    kinds[d.kind] = (kinds[d.kind] ?? 0) + 1;
    if (d.kind !== 'pieces') {
      if (o.poll) {
        events.push(now + o.pieceMs / 4, { kind: 'ask', cid });
        return;
      }
      if (parked.has(cid)) return;
      queue.push(cid);
      parked.set(cid, ++token);
      events.push(now + LONG_POLL_MS, { kind: 'timeout', cid, token });
      return;
    }
    for (const a of d.pieces) {
      assignments++;
      if (a.src === 'cdn') fromCdn++;
      events.push(now + o.pieceMs * (0.8 + 0.4 * rand()), { kind: 'done', cid, piece: a.pieceNum, src: a.src });
    }
  };

  while (events.size > 0 && finished.size < o.peers) {
    const { k, v } = events.pop();
    now = k;
    if (v.kind === 'timeout') {
      if (parked.get(v.cid) !== v.token) continue;
      parked.delete(v.cid);
      ask(v.cid);
      continue;
    }
    if (v.kind === 'done') {
      applyReport(task, { cid: v.cid, pieceNum: v.piece, src: v.src, ok: true }, o.limits, now);
      arrived.get(v.cid)![v.piece] = now;
      // A completion frees one upload slot and adds one holder with free slots: wake about as
      // many waiters as that can serve (supernode TaskService.notify does the same).
      let woken = 0;
      while (woken < WAKE_PER_CHANGE && head < queue.length) {
        const w = queue[head++];
        if (head > 4096) {
          queue.splice(0, head);
          head = 0;
        }
        if (!parked.has(w)) continue;
        parked.delete(w);
        woken++;
        ask(w);
      }
    }
    if (!parked.has(v.cid)) ask(v.cid);
  }
  const cpuUsed = process.cpuUsage(cpu0);
  const gc = (globalThis as { gc?: () => void }).gc;
  // Drop the simulation's own structures, then weigh what is left: the scheduler's task state.
  events.clear();
  parked.clear();
  queue.length = 0;
  gc?.();
  const withState = process.memoryUsage().heapUsed;
  const keep = task.peers.size;
  task.peers.clear();
  task.holders.clear();
  gc?.();
  const stateHeapMB = gc ? (withState - process.memoryUsage().heapUsed) / (1024 * 1024) : -1;
  void keep;
  const cpu = (cpuUsed.user + cpuUsed.system) / 1000;
  let lagSum = 0;
  let lagN = 0;
  let headSum = 0;
  for (const cid of cids) {
    const at = arrived.get(cid)!;
    let prefix = 0;
    for (let n = 0; n < at.length; n++) {
      prefix = Math.max(prefix, at[n]);
      lagSum += prefix - at[n];
      lagN++;
      if (n === Math.min(7, at.length - 1)) headSum += prefix;
    }
  }
  if (process.env.SIM_DEBUG) console.error(kinds);
  return { assignments, scheduleCalls: calls, cpuMs: cpu, simMs: now, fromCdn, meanStreamLagMs: lagSum / lagN, meanHeadMs: headSum / cids.length, stateHeapMB };
}

/** Baseline policy: pieces in order, always from the CDN, no limits beyond peerDownLimit. */
function naive(task: TaskState, cid: string, limits: SchedulerLimits) {
  const peer = task.peers.get(cid)!;
  if (peer.held.size >= task.pieceCount) return { kind: 'finish' as const };
  const pieces: { pieceNum: number; src: string }[] = [];
  for (let n = 0; n < task.pieceCount && peer.running.size < limits.peerDownLimit; n++) {
    if (peer.held.has(n) || peer.running.has(n)) continue;
    peer.running.set(n, { src: 'cdn', at: 0, depth: 0 });
    pieces.push({ pieceNum: n, src: 'cdn' });
  }
  return pieces.length ? { kind: 'pieces' as const, pieces } : { kind: 'wait' as const };
}
