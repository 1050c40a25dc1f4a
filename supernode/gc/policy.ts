/**
 * Garbage-collection policy, pure: state and a clock in, decisions out (Dragonfly's
 * mgr/gc and cdn_gc.go). The runner applies them.
 */

export interface DiskCandidate {
  taskId: string;
  bytes: number;
  accessTime: number;
  /** Mean ms between accesses; 0 for a task fetched once. */
  interval: number;
  /** Being fetched from the origin, or downloaded by a peer: never deleted. */
  inUse: boolean;
}

export interface DiskGcLimits {
  youngGCThreshold: number;
  fullGCThreshold: number;
  intervalThreshold: number;
  /** Tenths of the candidates a young GC removes (Dragonfly's cleanRatio, default 1). */
  cleanRatio: number;
  /**
   * A young GC leaves tasks accessed within this long (the runner passes taskExpireTime). With
   * Dragonfly's 100 GB youngGCThreshold most disks are always "young", and a task finished a few
   * seconds ago, about to be pulled by the next host, would otherwise be the first to go.
   */
  youngMinIdleMs?: number;
}

export interface DiskDecision {
  kind: 'none' | 'young' | 'full';
  victims: string[];
}

/**
 * Above youngGCThreshold of free space nothing happens. At or below fullGCThreshold every idle
 * task goes. In between, a young GC removes ceil(n * cleanRatio / 10) idle tasks: first those
 * not accessed on their usual rhythm, oldest access first; last the regularly used ones
 * (interval > 0 and the gap since the last access within interval + IntervalThreshold),
 * largest first.
 */
export function selectDiskVictims(tasks: readonly DiskCandidate[], freeBytes: number, l: DiskGcLimits, now: number): DiskDecision {
  if (freeBytes > l.youngGCThreshold) return { kind: 'none', victims: [] };
  if (freeBytes <= l.fullGCThreshold) return { kind: 'full', victims: tasks.filter((t) => diskEligible(t, 'full', l, now)).map((t) => t.taskId) };
  return young(tasks.filter((t) => diskEligible(t, 'young', l, now)), l, now);
}

/**
 * Whether a GC of this kind may delete the task. The runner asks again right before each
 * deletion: deleting takes a while per task, and a host may start pulling a later victim meanwhile.
 */
export function diskEligible(t: Pick<DiskCandidate, 'inUse' | 'accessTime'>, kind: 'young' | 'full', l: DiskGcLimits, now: number): boolean {
  return !t.inUse && (kind === 'full' || now - t.accessTime >= (l.youngMinIdleMs ?? 0));
}

function young(idle: readonly DiskCandidate[], l: DiskGcLimits, now: number): DiskDecision {
  const regular = (t: DiskCandidate) => t.interval > 0 && now - t.accessTime <= t.interval + l.intervalThreshold;
  const first = idle.filter((t) => !regular(t)).sort((a, b) => a.accessTime - b.accessTime || a.taskId.localeCompare(b.taskId));
  const last = idle.filter(regular).sort((a, b) => b.bytes - a.bytes || a.taskId.localeCompare(b.taskId));
  const n = Math.ceil((idle.length * l.cleanRatio) / 10);
  return { kind: 'young', victims: [...first, ...last].slice(0, n).map((t) => t.taskId) };
}

export interface MetaTask {
  taskId: string;
  accessedAt: number;
  inUse: boolean;
  peers: readonly { cid: string; down: boolean; downAt: number }[];
}

export interface MetaDecision {
  /** Tasks whose swarm state is dropped (their files stay for later requests). */
  expire: string[];
  /** Peers down for longer than peerGCDelay, removed from their task. */
  removePeers: { taskId: string; cid: string }[];
}

export function selectMetaActions(tasks: readonly MetaTask[], l: { taskExpireTime: number; peerGCDelay: number }, now: number): MetaDecision {
  const expire: string[] = [];
  const removePeers: { taskId: string; cid: string }[] = [];
  for (const t of tasks) {
    if (!t.inUse && now - t.accessedAt >= l.taskExpireTime) {
      expire.push(t.taskId);
      continue;
    }
    for (const p of t.peers) if (p.down && now - p.downAt >= l.peerGCDelay) removePeers.push({ taskId: t.taskId, cid: p.cid });
  }
  return { expire, removePeers };
}
