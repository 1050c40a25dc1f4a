/**
 * Scheduler state for one task. Plain data that the pure functions in schedule.ts and
 * progress.ts read and update; no I/O and no timers live here, time comes in as `now`.
 */
export interface PeerState {
  cid: string;
  /** Pieces this peer holds and may serve. */
  held: Set<number>;
  /** Pieces assigned to this peer and not yet reported: piece -> source cid and when. */
  running: Map<number, { src: string; at: number }>;
  /** Uploads this peer is serving right now (Dragonfly's producerLoad). */
  load: number;
  /** Set by /peer/service/down; such a peer is never a source again. */
  down: boolean;
  downAt: number;
  serviceErrorCount: number;
  clientErrorCount: number;
  /** Sources this peer failed to fetch from: source cid -> failures. */
  blacklist: Map<string, number>;
  /** Our dfdaemon streams to Docker, so pieces near its head matter more. */
  streaming: boolean;
  lastSeen: number;
}

export interface TaskState {
  taskId: string;
  /** The CDN's own cid; it is the fallback source for every piece. */
  cdnCid: string;
  /** -1 until the CDN knows the length. */
  pieceCount: number;
  /** Pieces the CDN has stored and verified. */
  cdnPieces: Set<number>;
  cdnStatus: 'running' | 'success' | 'failed';
  peers: Map<string, PeerState>;
  /** holders[n] lists the peers (not the CDN) that hold piece n, for rarest-first. */
  holders: Map<number, string[]>;
  /** Round-robin cursor per piece so sources spread over holders. */
  cursor: Map<number, number>;
  cdnLoad: number;
  cdnLoadAt: number;
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
}

export function newTask(taskId: string, cdnCid: string): TaskState {
  return {
    taskId,
    cdnCid,
    pieceCount: -1,
    cdnPieces: new Set(),
    cdnStatus: 'running',
    peers: new Map(),
    holders: new Map(),
    cursor: new Map(),
    cdnLoad: 0,
    cdnLoadAt: 0,
  };
}

export function addPeer(task: TaskState, cid: string, now: number, streaming = false): PeerState {
  const existing = task.peers.get(cid);
  if (existing) {
    existing.lastSeen = now;
    existing.streaming = streaming;
    return existing;
  }
  const p: PeerState = {
    cid,
    held: new Set(),
    running: new Map(),
    load: 0,
    down: false,
    downAt: 0,
    serviceErrorCount: 0,
    clientErrorCount: 0,
    blacklist: new Map(),
    streaming,
    lastSeen: now,
  };
  task.peers.set(cid, p);
  return p;
}

export function isComplete(task: TaskState, peer: PeerState): boolean {
  return task.cdnStatus === 'success' && task.pieceCount >= 0 && peer.held.size >= task.pieceCount;
}
