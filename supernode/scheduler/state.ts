/**
 * Scheduler state for one task. Plain data that the pure functions in schedule.ts and
 * progress.ts read and update; no I/O and no timers live here, time comes in as `now`.
 */
export interface PeerState {
  cid: string;
  /** Pieces this peer holds and may serve. */
  held: Set<number>;
  /** have[n] is 1 when held and 2 when running: the hot path reads this, not the Set/Map. */
  have: number[];
  /** Pieces assigned to this peer and not yet reported: piece -> source cid, when, and how deep
   * in a cut-through chain (0: the source held the piece whole). */
  running: Map<number, Running>;
  /** Runs the supernode took back unreported (timed out): piece -> the source it was sent to. A
   * late failure report may still be charged to that source; see applyReport. */
  taken: Map<number, string>;
  /** Uploads this peer is serving right now for this task (Dragonfly's producerLoad). */
  load: number;
  /** Its uploads for every task, shared by its PeerStates of all tasks (see HostUploads). */
  host: HostUploads;
  /** Whether this peer is in task.free (kept by syncFree). */
  isFree: boolean;
  /** Up and not eliminated: counted in task.liveHolders (kept by syncFree). */
  isLive: boolean;
  /** Set by /peer/service/down; such a peer is never a source again. */
  down: boolean;
  downAt: number;
  serviceErrorCount: number;
  clientErrorCount: number;
  /** Sources this peer failed to fetch from: source cid -> failures. */
  blacklist: Map<string, number>;
  /** Sources that refused this peer as busy (all upload slots taken): cid -> until when (ms). */
  busyUntil: Map<string, number>;
  /** Our dfdaemon streams to Docker, so pieces near its head matter more. */
  streaming: boolean;
  /** Our peers serve a piece while it still arrives (cut-through); stock dfget does not. */
  relay: boolean;
  /** Its last call, or the last piece someone reported fetching from it: GC's sign of life. */
  lastSeen: number;
  /** Downstream fetches that failed on its relay runs while they went on, since cutSince (see
   * relaySuspect); a new strike after a sign of life starts the count again. */
  cutStrikes: number;
  cutSince: number;
}

export interface Running {
  src: string;
  at: number;
  /** Hops from a source that holds the piece whole: 0 when src holds it, else its depth + 1. */
  depth: number;
  /** For a relayed fetch (depth > 0): the upstream's run it relays. A newer run there means
   * this one was cut off. */
  up?: Running;
  /** Downstreams whose relayed fetch of this run failed while it was still going: blamed on this
   * peer if the run ends with the piece, forgiven if it fails (it cut them off). */
  cut?: Set<string>;
}

/**
 * One cid's uploads across tasks. Our dfdaemon uses one cid and one upload budget for all its
 * tasks, so peerUpLimit bounds what it serves over all of them: counted per task, a host holding
 * every layer of an image was sent 17 uploads at once while the CDN sat idle. Keyed by the run
 * objects so a release takes off exactly its own run; runs of a task dropped while they were
 * going are never released, so those older than pieceTimeoutMs stop counting (see hostLoad).
 */
export interface HostUploads {
  runs: Set<Running>;
}

/** The HostUploads of every cid, shared by the tasks of one supernode (PeerRegistry keeps it). */
export type UploadTable = Map<string, HostUploads>;

export interface TaskState {
  taskId: string;
  /** Upload counts per cid, shared with the supernode's other tasks (or this task's own). */
  uploads: UploadTable;
  /** The CDN's own cid; it is the fallback source for every piece. */
  cdnCid: string;
  /** -1 until the CDN knows the length. */
  pieceCount: number;
  /** Pieces the CDN has stored and verified. */
  cdnPieces: Set<number>;
  /** Every piece available from anyone (CDN or peer), in the order it became available. */
  avail: number[];
  availSet: Set<number>;
  cdnStatus: 'running' | 'success' | 'failed';
  peers: Map<string, PeerState>;
  /** holders[n] lists the peers (not the CDN) that hold piece n, for rarest-first. */
  holders: Map<number, string[]>;
  /** holderCount[n] = holders[n].length, as an array for the hot path. */
  holderCount: number[];
  /** freeHolders[n]: holders of n that are in `free` right now. A piece with none (and the CDN
   * at its cap) cannot be assigned, which is decided without looking at any holder. */
  freeHolders: number[];
  /** liveHolders[n]: holders of n that are up and not eliminated, busy or not. */
  liveHolders: number[];
  /** inflight[n]: copies of piece n being downloaded right now, from any source. */
  inflight: number[];
  /** cdnInflight[n]: CDN copies of piece n being downloaded right now. */
  cdnInflight: number[];
  /** When the latest CDN copy of piece n was handed out. */
  cdnInflightAt: number[];
  /** relays[n]: relay-capable peers receiving piece n right now, which may pass it on. */
  relays: Map<number, string[]>;
  /** Round-robin cursor per piece so sources spread over holders. */
  cursor: Map<number, number>;
  cdnLoad: number;
  /**
   * Peers that could serve someone right now (up, not eliminated, under peerUpLimit, holding
   * something). When it is empty and the CDN is at its cap, a request is answered "wait" in
   * O(1) instead of scanning every holder of every piece.
   */
  free: Set<string>;
  /** Limits as of the last schedule call, so bookkeeping outside schedule() can keep `free` right. */
  upLimit: number;
  elimLimit: number;
  lastExpire: number;
}

export interface SchedulerLimits {
  peerDownLimit: number;
  peerUpLimit: number;
  eliminationLimit: number;
  failureCountLimit: number;
  /** Concurrent pieces the supernode itself serves for one task. */
  cdnTaskLoadLimit: number;
  /** A piece not reported within this long is taken back (the peer died or hung). */
  pieceTimeoutMs: number;
  /** Cut-through: a peer still receiving a piece may be its source, up to this many hops from
   * a whole copy. 0 turns it off. */
  relayDepth: number;
}

/** Without a shared `uploads` table, a peer's uploads are counted for this task alone. */
export function newTask(taskId: string, cdnCid: string, uploads: UploadTable = new Map()): TaskState {
  return {
    taskId,
    uploads,
    cdnCid,
    pieceCount: -1,
    cdnPieces: new Set(),
    avail: [],
    availSet: new Set(),
    cdnStatus: 'running',
    peers: new Map(),
    holders: new Map(),
    holderCount: [],
    freeHolders: [],
    liveHolders: [],
    inflight: [],
    cdnInflight: [],
    cdnInflightAt: [],
    relays: new Map(),
    cursor: new Map(),
    cdnLoad: 0,
    free: new Set(),
    upLimit: Infinity,
    elimLimit: Infinity,
    lastExpire: -Infinity,
  };
}

/** Keep `task.free` and `freeHolders` in step with one peer's state; call after any change. */
export function syncFree(task: TaskState, p: PeerState): void {
  const live = !p.down && p.serviceErrorCount < task.elimLimit && task.peers.get(p.cid) === p;
  if (live !== p.isLive) {
    p.isLive = live;
    for (const n of p.held) task.liveHolders[n] = (task.liveHolders[n] ?? 0) + (live ? 1 : -1);
  }
  const free = live && p.held.size > 0 && p.load < task.upLimit;
  if (free === p.isFree) return;
  p.isFree = free;
  const d = free ? 1 : -1;
  for (const n of p.held) task.freeHolders[n] = (task.freeHolders[n] ?? 0) + d;
  if (free) task.free.add(p.cid);
  else task.free.delete(p.cid);
}

export function markAvailable(task: TaskState, n: number): void {
  if (task.availSet.has(n)) return;
  task.availSet.add(n);
  task.avail.push(n);
}

export function addPeer(task: TaskState, cid: string, now: number, streaming = false, relay = false): PeerState {
  const existing = task.peers.get(cid);
  if (existing) {
    existing.lastSeen = now;
    existing.streaming = streaming;
    existing.relay = relay;
    return existing;
  }
  const p: PeerState = {
    cid,
    held: new Set(),
    have: [],
    running: new Map(),
    taken: new Map(),
    load: 0,
    host: hostOf(task.uploads, cid),
    isFree: false,
    isLive: false,
    down: false,
    downAt: 0,
    serviceErrorCount: 0,
    clientErrorCount: 0,
    blacklist: new Map(),
    busyUntil: new Map(),
    streaming,
    relay,
    lastSeen: now,
    cutStrikes: 0,
    cutSince: 0,
  };
  task.peers.set(cid, p);
  return p;
}

function hostOf(uploads: UploadTable, cid: string): HostUploads {
  let h = uploads.get(cid);
  if (!h) {
    h = { runs: new Set() };
    uploads.set(cid, h);
  }
  return h;
}

/**
 * Uploads the peer serves right now over all tasks. Runs of a task dropped mid-fetch were never
 * released; past the piece timeout every task would have taken them back, so they are let go
 * here. Runs enter in time order, so the stale ones sit at the front of the set.
 */
export function hostLoad(p: PeerState, now: number, timeoutMs: number): number {
  const runs = p.host.runs;
  for (const run of runs) {
    if (now - run.at < timeoutMs) break;
    runs.delete(run);
  }
  return runs.size;
}

/**
 * Whether `p` may take one more upload: under peerUpLimit for this task and for its host. The
 * task's `free` set follows only the first (another task's releases do not reach it), so it may
 * hold a peer whose host is full: that costs the caller a skip, never an upload over the limit.
 */
export function mayUpload(p: PeerState, limits: { peerUpLimit: number; pieceTimeoutMs: number }, now: number): boolean {
  return p.load + 1 <= limits.peerUpLimit && hostLoad(p, now, limits.pieceTimeoutMs) + 1 <= limits.peerUpLimit;
}

/** A peer is done once it holds every piece; the length is known from the origin's answer. */
export function isComplete(task: TaskState, peer: PeerState): boolean {
  return task.pieceCount >= 0 && peer.held.size >= task.pieceCount;
}
