import type { Logger } from 'pino';
import { DfError, taskNotFound } from '../../shared/errors.js';
import { Code, PieceResult } from '../../shared/protocol/codes.js';
import { rangeString, WRAP_OVERHEAD } from '../../shared/protocol/pieces.js';
import { blobDigestOf, taskId as computeTaskId } from '../../shared/protocol/taskid.js';
import type { Cdn } from '../cdn/cdn.js';
import type { CdnTask, SourceFailure } from '../cdn/cdn-task.js';
import { downloadPath } from '../cdn/paths.js';
import {
  applyReport,
  busyWakeIn,
  cdnFinished,
  cdnPieceReady,
  isComplete,
  joinPeer,
  markDown,
  removePeer,
  newTask,
  schedule,
  type Decision,
  type ReportEffect,
  type SchedulerLimits,
  type TaskState,
} from '../scheduler/index.js';
import { CdnRepair, type PieceCheck, type PieceChecker } from './cdn-repair.js';
import { PeerRegistry } from './peers.js';
import { MAX_AUTH_ATTEMPTS, worthOwnAttempt } from './source-auth.js';
import type { PieceErrorIn, PieceInfo, RegisterReply, Registration, ReportIn, TaskReply } from './types.js';

interface PeerAddr {
  ip: string;
  port: number;
  path: string;
  superNodeIp: string;
}

export interface TaskEntry {
  id: string;
  url: string;
  cdn: CdnTask;
  sched: TaskState;
  peers: Map<string, PeerAddr>;
  waiters: Set<() => void>;
  accessedAt: number;
}

export interface TaskServiceOptions {
  cdn: Cdn;
  limits: SchedulerLimits;
  /** The address peers reach the supernode's download port at ('' = as each peer sees it). */
  advertiseIP: string;
  downloadPort: number;
  now: () => number;
  rand?: () => number;
  log: Logger;
  /** How long registration waits for the origin to answer. */
  readyTimeoutMs?: number;
  /**
   * Tasks kept at most. A registration for one more first asks makeRoom to take an idle task out
   * of memory (as meta GC would later), and is refused (TOO_MANY_REQUESTS) when it cannot.
   */
  maxTasks?: number;
  makeRoom?: () => boolean;
  onAssign?: (taskId: string, fromCdn: boolean) => void;
  onReport?: (taskId: string, effect: ReportEffect) => void;
  /** A registered peer reported a failed piece of the task (the source is the CDN or a peer). */
  onPieceFailure?: (taskId: string, fromCdn: boolean) => void;
  /** Re-reads CDN pieces that peers fail to get (the CDN itself; tests inject fakes). */
  checker?: PieceChecker;
}

export class RegistrationFailed extends Error {
  constructor(readonly failure: SourceFailure) {
    super(failure.message);
  }
}

/** Ties the CDN, the pure scheduler and peer addresses together; the API layer calls this. */
export class TaskService {
  readonly tasks = new Map<string, TaskEntry>();
  readonly peers = new PeerRegistry();
  private readonly repair: CdnRepair | undefined;

  constructor(private readonly o: TaskServiceOptions) {
    this.repair = o.checker && new CdnRepair(o.checker, o.now);
  }

  /** Forget a task's swarm (peers, progress); the CDN decides separately about its files. */
  drop(taskId: string): boolean {
    const e = this.tasks.get(taskId);
    if (!e) return false;
    this.tasks.delete(taskId);
    this.peers.dropTask(taskId);
    this.notify(e);
    return true;
  }

  /** A peer leaves every task: its uploads stop being offered and its downloads are released. */
  removePeer(cid: string): boolean {
    const info = this.peers.delete(cid);
    for (const id of this.tasks.keys()) this.leave(id, cid);
    return info !== undefined;
  }

  /** The peer leaves one task's swarm (GC of a peer that is gone, or removePeer). */
  leave(taskId: string, cid: string): void {
    this.peers.leave(cid, taskId);
    const e = this.tasks.get(taskId);
    if (!e?.sched.peers.has(cid)) return;
    removePeer(e.sched, cid);
    e.peers.delete(cid);
    this.notify(e);
  }

  cdnCid(taskId: string): string {
    return `cdnnode:${this.o.advertiseIP || 'supernode'}~${taskId}`;
  }

  get(taskId: string): TaskEntry {
    const e = this.tasks.get(taskId);
    if (!e) throw taskNotFound(taskId);
    return e;
  }

  async register(reg: Registration): Promise<RegisterReply> {
    // Dragonfly matches the header name exactly, so only `Range` makes a ranged task.
    const range = reg.headers['Range'];
    const id = computeTaskId(reg.taskUrl, { md5: reg.md5, identifier: reg.identifier, range });
    // Each task holds memory (scheduler state, the registrant's headers, its CDN task) until
    // meta GC, minutes after its last use: a burst of distinct URLs must not run the process
    // out of memory. Tasks already known keep registering peers.
    const max = this.o.maxTasks ?? Infinity;
    if (!this.tasks.has(id) && this.tasks.size >= max && !this.o.makeRoom?.()) {
      throw new DfError('TOO_MANY_REQUESTS', `the supernode holds ${this.tasks.size} tasks (maxTasks ${max}); fetch this one from its origin`);
    }
    let cdnTask!: CdnTask;
    let entry!: TaskEntry;
    for (let attempt = 1; ; attempt++) {
      cdnTask = this.ensureCdn(id, reg, range);
      entry = this.attach(id, reg.rawUrl, cdnTask);
      cdnTask.touch();
      try {
        await this.waitReady(cdnTask);
        break;
      } catch (err) {
        // Joined a fetch the origin refused someone else's credentials for: try our own.
        if (attempt >= MAX_AUTH_ATTEMPTS || !(err instanceof RegistrationFailed) || !worthOwnAttempt(err.failure, cdnTask, reg.headers)) throw err;
        this.o.log.info({ taskId: id, cid: reg.cid }, 'origin refused another registrant: fetching with this one\'s headers');
      }
    }
    if (cdnTask.layout && entry.sched.pieceCount < 0) entry.sched.pieceCount = cdnTask.layout.count;
    joinPeer(entry.sched, reg.cid, this.o.now(), reg.dfdaemon, reg.relay);
    entry.peers.set(reg.cid, { ip: reg.ip, port: reg.port, path: urlPath(reg.path), superNodeIp: reg.superNodeIp });
    this.peers.upsert(reg.cid, { IP: reg.ip, hostName: reg.hostName, port: reg.port, version: reg.version }, this.o.now(), id);
    entry.accessedAt = this.o.now();
    this.o.log.info({ taskId: id, cid: reg.cid, ip: reg.ip, fileLength: cdnTask.fileLength }, 'peer registered');
    return { taskId: id, fileLength: cdnTask.fileLength, pieceSize: cdnTask.pieceSize, cdnSource: 'supernode', busyReports: true };
  }

  /** The CDN's task for this ID, started with this registrant's headers if none is running. */
  private ensureCdn(id: string, reg: Registration, range: string | undefined): CdnTask {
    try {
      return this.o.cdn.ensure({
        taskId: id,
        url: reg.rawUrl,
        headers: reg.headers,
        insecure: reg.insecure,
        rootCAs: reg.rootCAs,
        expectSha256: range ? undefined : blobDigestOf(reg.taskUrl),
        // dfget --md5: the content must have it (Dragonfly fails the task on a mismatch).
        expectMd5: reg.md5 || undefined,
      });
    } catch (f) {
      throw new RegistrationFailed(f as SourceFailure);
    }
  }

  private async waitReady(t: CdnTask): Promise<void> {
    // Time queued for a fetch slot (maxSourceFetches) says nothing about the origin: the bound
    // starts with the fetch. Refusing earlier would send every host to the origin itself.
    if (t.status === 'WAITING') await new Promise<void>((res) => t.once('running', res));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, rej) => {
      timer = setTimeout(
        () => rej({ code: 'SOURCE_UNREACHABLE', dfCode: Code.URLNotReachable, message: 'the origin did not answer in time' }),
        this.o.readyTimeoutMs ?? 30_000,
      );
    });
    try {
      await Promise.race([t.ready, timeout]);
    } catch (f) {
      throw new RegistrationFailed(f as SourceFailure);
    } finally {
      clearTimeout(timer);
    }
  }

  /** One scheduler entry per CDN attempt: a retried download starts a fresh swarm. */
  private attach(id: string, url: string, cdnTask: CdnTask): TaskEntry {
    const existing = this.tasks.get(id);
    if (existing && existing.cdn === cdnTask) return existing;
    const sched = newTask(id, this.cdnCid(id));
    const entry: TaskEntry = existing ?? { id, url, cdn: cdnTask, sched, peers: new Map(), waiters: new Set(), accessedAt: this.o.now() };
    entry.cdn = cdnTask;
    entry.sched = sched;
    this.tasks.set(id, entry);
    cdnTask.pieces.forEach((_, n) => cdnPieceReady(sched, n));
    if (cdnTask.status === 'SUCCESS') cdnFinished(sched, true, cdnTask.layout?.count ?? 0);
    cdnTask.on('piece', (n: number) => {
      if (entry.cdn !== cdnTask) return;
      cdnPieceReady(sched, n);
      this.notify(entry);
    });
    cdnTask.once('end', (ok: boolean) => {
      if (entry.cdn !== cdnTask) return;
      cdnFinished(sched, ok, cdnTask.layout?.count ?? 0);
      this.notify(entry);
    });
    return entry;
  }

  private notify(entry: TaskEntry): void {
    const ws = [...entry.waiters];
    entry.waiters.clear();
    for (const w of ws) w();
  }

  private changed(entry: TaskEntry, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        entry.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      entry.waiters.add(done);
    });
  }

  private pieceOf(entry: TaskEntry, range: string): number | undefined {
    return entry.cdn.layout?.fromRange(range)?.num;
  }

  /** Apply a reported piece result; returns the piece number if the range was valid. */
  report(taskId: string, cid: string, r: ReportIn): number | undefined {
    const entry = this.get(taskId);
    const n = this.pieceOf(entry, r.range);
    // Stock dfget sends 502 (invalid) only with its first request, which names no piece. Ours
    // sends it with a piece and its source when that source refused the fetch as busy.
    const busy = r.result === PieceResult.Invalid;
    // Only a peer of this task may report on it, and only about one of its pieces.
    const peer = entry.sched.peers.get(cid);
    if (n === undefined || !peer || (busy && !r.dstCid)) return undefined;
    const ok = r.result === PieceResult.Success || r.result === PieceResult.SemiSuccess;
    // The scheduler counts no failure against the CDN, but a bad copy there fails every peer.
    const src = r.dstCid || peer.running.get(n)?.src;
    if (!ok && !busy) {
      this.o.onPieceFailure?.(taskId, src?.startsWith('cdnnode:') ?? false);
      if (src === entry.sched.cdnCid) this.suspectCdn(entry, n);
    }
    const eff = applyReport(entry.sched, { cid, pieceNum: n, src: r.dstCid, ok, busy }, this.o.limits, this.o.now());
    this.o.onReport?.(taskId, eff);
    if (busy) this.o.log.info({ taskId, cid, src: r.dstCid, pieceNum: n }, 'piece source busy');
    else if (!ok) this.o.log.warn({ taskId, cid, src: r.dstCid, pieceNum: n, blacklisted: eff.blacklisted, eliminated: eff.eliminated }, 'piece failed');
    // Any result frees the source's upload slot, and a success adds a holder: waiters may now fit.
    this.notify(entry);
    return n;
  }

  /**
   * /peer/piece/error: counted with the /peer/task report that follows it, not here. Against
   * the CDN it asks for a re-check; a FILE_NOT_EXIST report names no piece, and any piece shows
   * whether the file is there.
   */
  pieceError(taskId: string, e: PieceErrorIn): void {
    const entry = this.get(taskId);
    if (e.dstCid !== entry.sched.cdnCid) return;
    const n = this.pieceOf(entry, e.range) ?? (e.range === '' && e.errorType === 'FILE_NOT_EXIST' ? 0 : undefined);
    if (n !== undefined) this.suspectCdn(entry, n);
  }

  /**
   * A peer failed piece n from the CDN: have the CDN re-read its copy. A corrupt or missing one
   * makes the CDN drop the task; its swarm goes too, so every peer's next /peer/task is a 404
   * and it registers again (stock dfget: "any other code: re-register"), which refetches the
   * task from the origin. Left alone, the peers would get the bad piece from the CDN again and
   * again until they give up on the supernode.
   */
  private suspectCdn(entry: TaskEntry, n: number): void {
    const cdnTask = entry.cdn;
    void this.repair?.suspect(entry.id, n)?.then((result: PieceCheck) => {
      const bad = result === 'corrupt' || result === 'missing';
      this.o.log[bad ? 'warn' : 'info']({ taskId: entry.id, pieceNum: n, result }, 'cdn piece re-checked after a peer failed it');
      if (!bad) return;
      // A registration since may have started a fresh copy: that one is not the bad one.
      if (this.tasks.get(entry.id)?.cdn === cdnTask) this.drop(entry.id);
    });
  }

  serviceDown(taskId: string, cid: string): boolean {
    const entry = this.get(taskId);
    const ok = markDown(entry.sched, cid, this.o.now());
    this.notify(entry);
    return ok;
  }

  /**
   * GET /peer/task: apply the report, then decide. With waitMs > 0 (our own peers), a "wait"
   * is held open until something changes instead of making the peer poll with back-off.
   */
  async next(taskId: string, cid: string, report: ReportIn | undefined, waitMs: number, signal?: AbortSignal, finished = false): Promise<TaskReply> {
    const entry = this.get(taskId);
    entry.accessedAt = this.o.now();
    const peer = entry.sched.peers.get(cid);
    const notRegistered = { code: 500, msg: `peer ${cid} is not registered for task ${taskId}`, error: 'PEER_NOT_REGISTERED' } as const;
    if (!peer) return notRegistered;
    // Every call counts as a sign of life, also one answered before the scheduler runs (meta GC
    // marks incomplete peers silent for peerExpireTime down).
    peer.lastSeen = this.o.now();
    if (report) this.report(taskId, cid, report);
    // Status 702: the session that sent this has ended (stock dfget when done, ours for a late
    // report). Pieces handed to it would never be fetched and would fill this peer's download
    // slots, possibly a newer registration's with the same cid, until they time out.
    if (finished) return this.toReply(entry, isComplete(entry.sched, peer) ? { kind: 'finish' } : { kind: 'wait' }, cid);
    const deadline = Date.now() + waitMs;
    let d = this.decide(entry, cid);
    while (d.kind === 'wait' && Date.now() < deadline && !signal?.aborted) {
      // A back-off from a busy source ends without any event in the swarm to wake the wait.
      await this.changed(entry, Math.min(deadline - Date.now(), busyWakeIn(peer, this.o.now()) ?? Infinity), signal);
      // A peer that hung up would never fetch what we assign now, and the pieces would
      // count against the limits until they expire.
      if (signal?.aborted) break;
      // Dropped meanwhile (GC, or a bad CDN copy): the peer must register again, not be handed
      // pieces of a swarm that no longer exists.
      if (this.tasks.get(taskId) !== entry) throw taskNotFound(taskId);
      // Removed meanwhile, and maybe registered again: this poll belongs to the session that
      // has ended, which would drop what it is handed while the pieces fill the new session's
      // download slots until they time out.
      if (entry.sched.peers.get(cid) !== peer) return notRegistered;
      d = this.decide(entry, cid);
    }
    // A relay-capable peer that starts pieces can pass them on at once (cut-through), so the
    // parked peers get to ask again now rather than when the pieces complete.
    if (d.kind === 'pieces' && peer.relay && this.o.limits.relayDepth > 0) this.notify(entry);
    return this.toReply(entry, d, cid);
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
      return { ...base, peerIp: ip, peerPort: this.o.downloadPort, path: downloadPath(entry.id) };
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
function urlPath(path: string): string {
  return path.replace(/%(?![0-9A-Fa-f]{2})|[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]/gu, (c) => encodeURIComponent(c));
}

function wrappedLength(entry: TaskEntry): number {
  const l = entry.cdn.layout;
  return l ? l.fileLength + l.count * WRAP_OVERHEAD : entry.cdn.fileLength;
}
