import { statfs } from 'node:fs/promises';
import type { SupernodeConfig } from '../../shared/config/supernode.js';
import type { Logger } from '../../shared/log/index.js';
import type { Cdn } from '../cdn/cdn.js';
import type { SupernodeMetrics } from '../metrics.js';
import { isComplete } from '../scheduler/index.js';
import type { TaskService } from '../service/tasks.js';
import { diskEligible, selectDiskVictims, selectMetaActions, type DiskDecision, type MetaDecision } from './policy.js';

export type FreeBytes = (dir: string) => Promise<number>;

export const statfsFreeBytes: FreeBytes = async (dir) => {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
};

/**
 * Applies the GC policy on Dragonfly's timers. Clock and free-space reading are injected, so
 * tests call runMeta()/runDisk() directly and drive both.
 */
export class GcRunner {
  private timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly cfg: SupernodeConfig,
    private readonly svc: TaskService,
    private readonly cdn: Cdn,
    private readonly metrics: SupernodeMetrics,
    private readonly log: Logger,
    private readonly now: () => number,
    private readonly freeBytes: FreeBytes = statfsFreeBytes,
  ) {}

  start(): void {
    const first = setTimeout(() => {
      this.timers.push(setInterval(() => void this.runMeta(), this.cfg.gcMetaInterval));
      this.timers.push(setInterval(() => void this.runDisk().catch((err: Error) => this.log.warn({ err: err.message }, 'disk gc failed')), this.cfg.gcDiskInterval));
    }, this.cfg.gcInitialDelay);
    this.timers.push(first);
    for (const t of this.timers) t.unref();
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
  }

  /**
   * A peer that still lacks pieces and has not asked the supernode anything for peerExpireTime
   * is gone (its host died, or dfget was killed without service/down): it neither holds a task
   * in use nor serves anyone. A complete peer has no reason to call, so it is judged by what it
   * serves: one that served nobody for taskExpireTime is treated as its swarm would be after
   * that long unused. Stock dfget drops a file idle for 3 minutes (--expiretime); one killed
   * before it said service/down would otherwise stay a holder and a source for as long as
   * the task is busy.
   */
  private silent(e: { sched: Parameters<typeof isComplete>[0] }, p: Parameters<typeof isComplete>[1], now: number): boolean {
    if (p.down) return false;
    const limit = isComplete(e.sched, p) ? this.cfg.taskExpireTime : this.cfg.peerExpireTime;
    return limit > 0 && now - p.lastSeen >= limit;
  }

  /** A task is in use while the CDN fetches it or any live peer still lacks pieces. */
  private inUse(taskId: string, now = this.now()): boolean {
    const t = this.cdn.get(taskId);
    if (t && (t.status === 'RUNNING' || t.status === 'WAITING')) return true;
    const e = this.svc.tasks.get(taskId);
    if (!e) return false;
    for (const p of e.sched.peers.values()) if (!p.down && !isComplete(e.sched, p) && !this.silent(e, p, now)) return true;
    return false;
  }

  /**
   * Make room for one more task under maxTasks: the least recently used task that nobody is
   * using leaves memory, as meta GC would drop it once it expired (its files stay, so a later
   * registration restores it). False when every task is in use.
   */
  evictIdle(): boolean {
    const now = this.now();
    let oldest: { id: string; at: number } | undefined;
    for (const e of this.svc.tasks.values()) {
      if ((!oldest || e.accessedAt < oldest.at) && !this.inUse(e.id, now)) oldest = { id: e.id, at: e.accessedAt };
    }
    if (!oldest) return false;
    this.expire(oldest.id);
    this.log.info({ taskId: oldest.id, idleMs: now - oldest.at }, 'maxTasks reached: an idle task leaves memory');
    return true;
  }

  /** The task's swarm leaves memory; its files and metadata stay for a later registration. */
  private expire(taskId: string): void {
    this.svc.drop(taskId);
    this.cdn.forget(taskId);
  }

  runMeta(): MetaDecision {
    const now = this.now();
    for (const e of this.svc.tasks.values()) {
      for (const p of [...e.sched.peers.values()]) {
        if (!this.silent(e, p, now)) continue;
        this.log.info({ taskId: e.id, cid: p.cid, complete: isComplete(e.sched, p) }, 'peer silent: marked down');
        this.svc.serviceDown(e.id, p.cid);
      }
    }
    const tasks = [...this.svc.tasks.values()].map((e) => ({
      taskId: e.id,
      accessedAt: e.accessedAt,
      inUse: this.inUse(e.id),
      peers: [...e.sched.peers.values()].map((p) => ({ cid: p.cid, down: p.down, downAt: p.downAt })),
    }));
    // A preheat starts CDN tasks no peer has registered for. Without this they would stay in
    // memory for good, request headers (registry tokens) and all: a failed one is not on disk for
    // disk GC to find, and a finished one is found there only once space runs short.
    for (const t of this.cdn.all()) {
      if (!this.svc.tasks.has(t.taskId)) tasks.push({ taskId: t.taskId, accessedAt: t.accessTime, inUse: this.inUse(t.taskId), peers: [] });
    }
    const d = selectMetaActions(tasks, this.cfg, now);
    for (const id of d.expire) this.expire(id);
    // Also off the peer's own record, or sweep below would keep it for as long as the task lives.
    for (const { taskId, cid } of d.removePeers) this.svc.leave(taskId, cid);
    const sweptPeers = this.svc.peers.sweep(now, this.cfg.taskExpireTime);
    const sweptFailures = this.cdn.sweepFailures();
    if (sweptPeers.length || sweptFailures) this.log.debug({ sweptPeers: sweptPeers.length, sweptFailures }, 'meta gc sweep');
    this.metrics.gcRuns.inc({ kind: 'meta' });
    if (d.expire.length || d.removePeers.length) this.log.info({ expired: d.expire, removedPeers: d.removePeers.length }, 'meta gc');
    return d;
  }

  async runDisk(): Promise<DiskDecision & { freedBytes: number }> {
    const free = await this.freeBytes(this.cfg.homeDir);
    const entries = this.cdn.diskEntries().map((e) => ({ ...e, inUse: e.running || this.inUse(e.taskId) }));
    const limits = { ...this.cfg, youngMinIdleMs: this.cfg.taskExpireTime };
    const d = selectDiskVictims(entries, free, limits, this.now());
    const chosen = new Map(entries.map((e) => [e.taskId, e]));
    const victims: string[] = [];
    let freed = 0;
    for (const id of d.victims) {
      // Each deletion awaits the disk and the store, so a long GC gives hosts time to register
      // for a victim further down the list; deleting it then would 404 them mid-download.
      const now = this.now();
      const e = chosen.get(id)!;
      const accessTime = this.cdn.get(id)?.accessTime ?? e.accessTime;
      if (d.kind !== 'none' && !diskEligible({ inUse: this.inUse(id, now), accessTime }, d.kind, limits, now)) continue;
      victims.push(id);
      freed += e.bytes;
      this.svc.drop(id);
      await this.cdn.delete(id);
    }
    this.metrics.gcRuns.inc({ kind: d.kind === 'none' ? 'disk-none' : `disk-${d.kind}` });
    this.metrics.gcFreedBytes.inc(freed);
    if (victims.length) this.log.info({ kind: d.kind, free, victims, skipped: d.victims.length - victims.length, freed }, 'disk gc');
    return { kind: d.kind, victims, freedBytes: freed };
  }
}
