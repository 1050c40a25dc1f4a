import { DfError, taskNotFound } from '../../shared/errors.js';
import { Code, PieceResult } from '../../shared/protocol/codes.js';
import { blobDigestOf, taskId as computeTaskId } from '../../shared/protocol/taskid.js';
import type { CdnTask, SourceFailure } from '../cdn/cdn-task.js';
import {
  applyReport,
  cdnFinished,
  cdnPieceReady,
  joinPeer,
  markDown,
  removePeer,
  newTask,
} from '../scheduler/index.js';
import { CdnRepair, type PieceCheck } from './cdn-repair.js';
import { PeerRegistry } from './peers.js';
import { RegistrantGate } from './registrant-gate.js';
import { MAX_AUTH_ATTEMPTS, worthOwnAttempt } from './source-auth.js';
import type { TaskEntry, TaskServiceOptions } from './task-entry.js';
import { TaskPoll, urlPath } from './task-poll.js';
import type { PieceErrorIn, RegisterReply, Registration, ReportIn, TaskReply } from './types.js';

// Moved to task-entry.js; importers keep finding them here.
export type { TaskEntry, TaskServiceOptions } from './task-entry.js';

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
  private readonly poll: TaskPoll;
  private readonly gate: RegistrantGate;
  /** Tasks whose parked polls look again at the end of this turn (notify). */
  private readonly waking = new Set<TaskEntry>();

  constructor(private readonly o: TaskServiceOptions) {
    this.repair = o.checker && new CdnRepair(o.checker, o.now);
    this.gate = new RegistrantGate({ now: o.now, log: o.log, probe: o.probe, timeoutMs: o.probeTimeoutMs });
    this.poll = new TaskPoll(o, {
      get: (taskId) => this.get(taskId),
      current: (taskId) => this.tasks.get(taskId),
      report: (taskId, cid, r) => this.report(taskId, cid, r),
      notify: (entry) => this.notify(entry),
    });
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
    // A task fetched with someone's credentials goes only to peers the origin lets in too.
    await this.gate.admit(cdnTask, reg);
    if (cdnTask.layout && entry.sched.pieceCount < 0) entry.sched.pieceCount = cdnTask.layout.count;
    joinPeer(entry.sched, reg.cid, this.o.now(), reg.dfdaemon, reg.relay);
    entry.peers.set(reg.cid, { ip: reg.ip, port: reg.port, path: urlPath(reg.path), superNodeIp: reg.superNodeIp, remote: reg.remote });
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
        // Parameters the task URL leaves out (a signed URL's) make the task a guarded one.
        taskUrl: reg.taskUrl,
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
    const sched = newTask(id, this.cdnCid(id), this.peers.uploads);
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

  /**
   * Let the task's parked polls look again, in the order they parked, once the current turn of
   * the event loop is done: a burst of reports (and the assignments they lead to) then costs
   * one look per parked poll, not one per report. Under load that is what keeps the supernode
   * answering: each pass is a single short turn, and the busier it is the more it coalesces.
   */
  private notify(entry: TaskEntry): void {
    if (this.waking.has(entry)) return;
    this.waking.add(entry);
    setImmediate(() => {
      this.waking.delete(entry);
      for (const check of [...entry.waiters]) if (entry.waiters.has(check)) check();
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

  /** GET /peer/task: the long poll, answered by TaskPoll. */
  next(taskId: string, cid: string, report: ReportIn | undefined, waitMs: number, signal?: AbortSignal, finished = false, remote?: string): Promise<TaskReply> {
    return this.poll.next(taskId, cid, report, waitMs, signal, finished, remote);
  }
}
