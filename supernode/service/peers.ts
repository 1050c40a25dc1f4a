import type { UploadTable } from '../scheduler/index.js';

/** A peer as /api/v1/peers shows it: one host's dfget or dfdaemon, across its tasks. */
export interface PeerInfo {
  ID: string;
  IP: string;
  hostName: string;
  port: number;
  version: string;
  created: number;
  lastSeen: number;
  tasks: Set<string>;
}

/** Every peer the supernode has heard of, by cid (legacy API) or by /api/v1 ID. */
export class PeerRegistry {
  readonly peers = new Map<string, PeerInfo>();
  /**
   * Each cid's uploads over all tasks, for every task's scheduler state (newTask): one host's
   * upload budget is shared by its tasks. Forgotten with the peer.
   */
  readonly uploads: UploadTable = new Map();

  upsert(id: string, p: { IP: string; hostName: string; port: number; version: string }, now: number, taskId?: string): PeerInfo {
    let info = this.peers.get(id);
    if (!info) {
      info = { ID: id, ...p, created: now, lastSeen: now, tasks: new Set() };
      this.peers.set(id, info);
    }
    Object.assign(info, p, { lastSeen: now });
    if (taskId) info.tasks.add(taskId);
    return info;
  }

  get(id: string): PeerInfo | undefined {
    return this.peers.get(id);
  }

  delete(id: string): PeerInfo | undefined {
    const p = this.peers.get(id);
    this.peers.delete(id);
    this.uploads.delete(id);
    return p;
  }

  /** The peer is no longer part of the task's swarm. */
  leave(id: string, taskId: string): void {
    this.peers.get(id)?.tasks.delete(taskId);
  }

  /** A task is gone: forget it on every peer. */
  dropTask(taskId: string): void {
    for (const p of this.peers.values()) p.tasks.delete(taskId);
  }

  /**
   * Forget peers with no task left that have not registered for idleMs. Stock dfget takes a new
   * cid every run, so without this the list only grows.
   */
  sweep(now: number, idleMs: number): string[] {
    const gone: string[] = [];
    for (const [id, p] of this.peers) {
      if (p.tasks.size === 0 && now - p.lastSeen >= idleMs) {
        this.peers.delete(id);
        this.uploads.delete(id);
        gone.push(id);
      }
    }
    return gone;
  }
}

export function peerJson(p: PeerInfo) {
  return { ID: p.ID, IP: p.IP, hostName: p.hostName, port: p.port, version: p.version, created: new Date(p.created).toISOString(), lastSeen: new Date(p.lastSeen).toISOString(), tasks: [...p.tasks] };
}
