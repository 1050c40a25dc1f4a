import { taskNotFound } from '../../shared/errors.js';
import { rangeString, WRAP_OVERHEAD } from '../../shared/protocol/pieces.js';
import { busyWakeIn, isComplete, schedule, type Decision, type PeerState } from '../scheduler/index.js';
import type { TaskEntry, TaskServiceOptions } from './task-entry.js';
import type { PieceInfo, ReportIn, TaskReply } from './types.js';

/** What the long poll needs of the TaskService that owns the tasks. */
export interface PollHost {
  get(taskId: string): TaskEntry;
  /** The task's current entry, if it still has one. */
  current(taskId: string): TaskEntry | undefined;
  report(taskId: string, cid: string, r: ReportIn): number | undefined;
  notify(entry: TaskEntry): void;
}

type PollOptions = Pick<TaskServiceOptions, 'limits' | 'now' | 'rand' | 'advertiseIP' | 'downloadPort' | 'tokens' | 'onAssign'>;

/** The answer to GET /peer/task: what a peer fetches next, held open while there is nothing. */
export class TaskPoll {
  constructor(
    private readonly o: PollOptions,
    private readonly svc: PollHost,
  ) {}

  /**
   * GET /peer/task: apply the report, then decide. With waitMs > 0 (our own peers), a "wait"
   * is held open until something changes instead of making the peer poll with back-off.
   */
  async next(taskId: string, cid: string, report: ReportIn | undefined, waitMs: number, signal?: AbortSignal, finished = false, remote?: string): Promise<TaskReply> {
    const entry = this.svc.get(taskId);
    entry.accessedAt = this.o.now();
    const peer = entry.sched.peers.get(cid);
    const notRegistered = { code: 500, msg: `peer ${cid} is not registered for task ${taskId}`, error: 'PEER_NOT_REGISTERED' } as const;
    if (!peer) return notRegistered;
    // A cid is no secret (/api/v1/peers lists them, with their tasks): for a guarded task, a poll
    // from another address than the registration's would hand that peer's pieces and tokens to
    // anyone. Only there: behind a load balancer or a NAT pool, or with a dual-stack name, one
    // host's connections may come from several addresses, which costs it P2P for that task.
    const from = entry.peers.get(cid)?.remote;
    if (entry.cdn.guarded && remote !== undefined && from !== undefined && from !== remote) return notRegistered;
    // Every call counts as a sign of life, also one answered before the scheduler runs (meta GC
    // marks incomplete peers silent for peerExpireTime down).
    peer.lastSeen = this.o.now();
    if (report) this.svc.report(taskId, cid, report);
    // Status 702: the session that sent this has ended (stock dfget when done, ours for a late
    // report). Pieces handed to it would never be fetched and would fill this peer's download
    // slots, possibly a newer registration's with the same cid, until they time out.
    if (finished) return this.toReply(entry, isComplete(entry.sched, peer) ? { kind: 'finish' } : { kind: 'wait' }, cid);
    let d = this.decide(entry, cid);
    if (d.kind === 'wait' && waitMs > 0 && !signal?.aborted) {
      const parked = await this.park(entry, cid, peer, waitMs, signal);
      if (parked instanceof Error) throw parked;
      // Dropped meanwhile (GC, or a bad CDN copy): the peer must register again, not be handed
      // pieces of a swarm that no longer exists.
      if (parked === 'gone') throw taskNotFound(taskId);
      // Removed meanwhile, and maybe registered again: this poll belongs to the session that
      // has ended, which would drop what it is handed while the pieces fill the new session's
      // download slots until they time out.
      if (parked === 'unregistered') return notRegistered;
      d = parked;
    }
    // A relay-capable peer that starts pieces can pass them on at once (cut-through), so the
    // parked peers get to ask again now rather than when the pieces complete.
    if (d.kind === 'pieces' && peer.relay && this.o.limits.relayDepth > 0) this.svc.notify(entry);
    return this.toReply(entry, d, cid);
  }

  /**
   * Hold a "wait" open until a wake pass (TaskService.notify) or the end of a busy back-off finds
   * the peer something, the deadline passes, or the peer hangs up. A wake that still finds
   * nothing costs one schedule() call: the promise, timer and listener live for the whole wait.
   * With hundreds of peers parked on one task, re-creating them on every wake (every report)
   * was most of the supernode's CPU and garbage (reviewer K: 256 peers kept a core 76% busy).
   */
  private park(entry: TaskEntry, cid: string, peer: PeerState, waitMs: number, signal?: AbortSignal): Promise<Decision | 'gone' | 'unregistered' | Error> {
    return new Promise((resolve) => {
      const deadline = Date.now() + waitMs;
      let timer: NodeJS.Timeout | undefined;
      let due = Infinity;
      const end = (r: Decision | 'gone' | 'unregistered' | Error) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        entry.waiters.delete(check);
        resolve(r);
      };
      // A peer that hung up would never fetch what we assign now, and the pieces would count
      // against the limits until they expire; nobody reads this answer.
      const onAbort = () => end({ kind: 'wait' });
      // A back-off from a busy source ends without any event in the swarm to wake the wait.
      const arm = () => {
        const at = Math.min(deadline, Date.now() + (busyWakeIn(peer, this.o.now()) ?? Infinity));
        if (at >= due) return;
        clearTimeout(timer);
        due = at;
        timer = setTimeout(onTimer, Math.max(0, at - Date.now()));
      };
      // Runs from a wake pass or a timer, outside any request: a throw here would take the
      // process down, so it fails this one poll, as it would have inside its request.
      const check = () => {
        try {
          if (this.svc.current(entry.id) !== entry) return end('gone');
          if (entry.sched.peers.get(cid) !== peer) return end('unregistered');
          const d = this.decide(entry, cid);
          if (d.kind !== 'wait') return end(d);
          if (peer.busyUntil.size > 0) arm();
        } catch (err) {
          end(err instanceof Error ? err : new Error(String(err)));
        }
      };
      // The deadline looks once more too: a swarm replaced or a peer removed without a wake
      // still answers as such, not as a plain "wait".
      const onTimer = () => {
        due = Infinity;
        check();
        if (!entry.waiters.has(check)) return;
        if (Date.now() >= deadline) return end({ kind: 'wait' });
        arm();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      entry.waiters.add(check);
      arm();
    });
  }

  private decide(entry: TaskEntry, cid: string): Decision {
    // An origin that sent no length (chunked) gives piece ranges only once the CDN has it all:
    // until then there is nothing a peer could be told to fetch, so nothing is assigned.
    if (!entry.cdn.layout && entry.sched.cdnStatus === 'running') return { kind: 'wait' };
    return schedule(entry.sched, cid, { limits: this.o.limits, now: this.o.now(), rand: this.o.rand ?? Math.random });
  }

  private toReply(entry: TaskEntry, d: Decision, cid: string): TaskReply {
    switch (d.kind) {
      case 'finish':
        // Dragonfly reports the wrapped length here; stock dfget expects that.
        return { code: 600, data: { md5: entry.cdn.md5 ?? '', fileLength: wrappedLength(entry) } };
      case 'fail':
        return { code: entry.cdn.failure?.dfCode === 608 ? 608 : 500, msg: entry.cdn.failure?.message ?? d.reason };
      case 'wait':
        return { code: 602, msg: 'wait' };
      case 'limited':
        return { code: 601, msg: 'peer download limit reached' };
      case 'pieces':
        return { code: 601, data: d.pieces.map((a) => this.pieceInfo(entry, a.pieceNum, a.src, cid)) };
    }
  }

  private pieceInfo(entry: TaskEntry, num: number, src: string, requester: string): PieceInfo {
    const layout = entry.cdn.layout!;
    const rec = entry.cdn.pieces[num];
    const fromCdn = src === entry.sched.cdnCid;
    this.o.onAssign?.(entry.id, fromCdn);
    const base = {
      range: rangeString(layout.piece(num)),
      pieceNum: num,
      pieceSize: layout.pieceSize,
      pieceMd5: rec?.md5 ?? '',
      pieceSha256: rec?.sha256 ?? '',
      cid: src,
      // An int in Go's PullPieceTaskResponseContinueData: a string makes stock dfget drop the whole answer.
      downLink: 0,
    };
    if (fromCdn) {
      // Without an advertised address, the CDN is wherever this peer reached the supernode.
      const ip = this.o.advertiseIP || entry.peers.get(requester)?.superNodeIp || '';
      return { ...base, peerIp: ip, peerPort: this.o.downloadPort, path: this.o.tokens.path(entry.id) };
    }
    const addr = entry.peers.get(src)!;
    return { ...base, peerIp: addr.ip, peerPort: addr.port, path: addr.path };
  }
}

/**
 * A registered path as a URL path. Stock dfget's may hold spaces or any script; Go's client
 * escapes those itself, Node's refuses to send them, so peers are handed them escaped (Go
 * unescapes the path on both ends, so stock peers fetch the same file). A `%` that is no
 * escape is escaped too: Go's client would refuse it.
 */
export function urlPath(path: string): string {
  return path.replace(/%(?![0-9A-Fa-f]{2})|[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]/gu, (c) => encodeURIComponent(c));
}

function wrappedLength(entry: TaskEntry): number {
  const l = entry.cdn.layout;
  return l ? l.fileLength + l.count * WRAP_OVERHEAD : entry.cdn.fileLength;
}
