import { Level } from 'level';
import { join } from 'node:path';
import { DfError } from '../../shared/errors.js';
import type { PieceRecord } from './cutter.js';

/**
 * What survives a restart about one CDN task. Request headers are not kept: they carry
 * registry tokens, which must not sit on disk and would be stale anyway; a resumed download
 * uses the headers of the peer that asks for the task again.
 */
export interface PersistedTask {
  taskId: string;
  url: string;
  fileLength: number;
  pieceSize: number;
  status: 'RUNNING' | 'SUCCESS';
  md5?: string;
  sha256?: string;
  expectSha256?: string;
  expectMd5?: string;
  accessTime: number;
  /** When a peer last registered for it; absent in metadata written before it was kept. */
  lastTouch?: number;
  /** Mean ms between accesses (0 until accessed twice), for disk GC's ordering. */
  interval: number;
  accessCount: number;
  /** Fetched with credentials or a signed URL (CdnTask.guarded); absent in older metadata. */
  guarded?: boolean;
  /** The URL the task ID was computed from (CdnTask.taskUrl); absent in older metadata. */
  taskUrl?: string;
}

/**
 * A task an earlier run (or maxTasks eviction) left on disk. Its piece records stay in the store
 * until a peer asks for the task again (`pieces` absent): a supernode that kept every cached
 * blob's piece table in memory passed the guide's 100 MB limit at ~2000 cached 50 MiB layers.
 */
export interface Restored {
  task: PersistedTask;
  pieces?: PieceRecord[];
}

export interface MetaStore {
  /** Every task recorded, without its pieces. */
  load(): Promise<Map<string, Restored>>;
  /** One task's piece records, by piece number (a hole where none was recorded). */
  pieces(taskId: string): Promise<PieceRecord[]>;
  putTask(t: PersistedTask): Promise<void>;
  putPiece(taskId: string, num: number, rec: PieceRecord): Promise<void>;
  delete(taskId: string): Promise<void>;
  close(): Promise<void>;
}

const pieceKey = (id: string, n: number) => `p:${id}:${String(n).padStart(6, '0')}`;

/** Task and piece metadata in LevelDB under homeDir/meta. */
export class LevelMetaStore implements MetaStore {
  private readonly db: Level<string, string>;
  /** Writes still under way; close() waits for them, later ones are dropped. */
  private readonly pending = new Set<Promise<unknown>>();
  private closing = false;

  constructor(private readonly homeDir: string) {
    this.db = new Level<string, string>(join(homeDir, 'meta'));
  }

  async load(): Promise<Map<string, Restored>> {
    try {
      await this.db.open();
    } catch (err) {
      // Otherwise the first read fails with "Iterator is not open", which names nothing.
      if ((err as { cause?: { code?: string } }).cause?.code === 'LEVEL_LOCKED') {
        throw new DfError('HOME_DIR_IN_USE', `homeDir ${this.homeDir} is in use by another running supernode; give each one its own`, { cause: err });
      }
      throw err;
    }
    const out = new Map<string, Restored>();
    for await (const value of this.db.values({ gte: 't:', lt: 't;' })) {
      const task = JSON.parse(value) as PersistedTask;
      out.set(task.taskId, { task });
    }
    return out;
  }

  async pieces(taskId: string): Promise<PieceRecord[]> {
    const out: PieceRecord[] = [];
    for await (const [key, value] of this.db.iterator({ gte: `p:${taskId}:`, lt: `p:${taskId};` })) {
      out[Number(key.slice(key.lastIndexOf(':') + 1))] = JSON.parse(value) as PieceRecord;
    }
    return out;
  }

  private track(work: () => Promise<void>): Promise<void> {
    if (this.closing) return Promise.resolve();
    const p = work();
    this.pending.add(p);
    return p.finally(() => this.pending.delete(p));
  }

  putTask(t: PersistedTask): Promise<void> {
    return this.track(() => this.db.put(`t:${t.taskId}`, JSON.stringify(t)));
  }

  putPiece(taskId: string, num: number, rec: PieceRecord): Promise<void> {
    return this.track(() => this.db.put(pieceKey(taskId, num), JSON.stringify(rec)));
  }

  delete(taskId: string): Promise<void> {
    return this.track(async () => {
      const ops: { type: 'del'; key: string }[] = [{ type: 'del', key: `t:${taskId}` }];
      for await (const key of this.db.keys({ gte: `p:${taskId}:`, lt: `p:${taskId};` })) ops.push({ type: 'del', key });
      await this.db.batch(ops);
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.allSettled([...this.pending]);
    await this.db.close();
  }
}
