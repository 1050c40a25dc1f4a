import { open, type FileHandle } from 'node:fs/promises';
import { isOutOfFds } from './disk-error.js';

/**
 * Open task-file handles kept at most, idle ones beyond it closed least recently used first. The
 * cache is bounded by bytes and age, not by count: one descriptor per cached file ran the process
 * out of descriptors (EMFILE) with a few thousand small blobs cached, sockets included.
 */
export const MAX_OPEN_FILES = 256;

interface Slot {
  readonly fh: Promise<FileHandle>;
  /** Reads and writes running on the handle: it is never closed under them. */
  users: number;
  /** Left the pool (evicted or dropped) while in use: the last user closes it. */
  gone: boolean;
}

/** A file the pool opens on demand: its path, and whether it was dropped for good. */
export interface PooledFile {
  readonly path: string;
}

/**
 * The piece store's open file handles, opened on first use and reopened after eviction, so the
 * descriptors held stay bounded whatever the cache holds. A handle in use is never closed; when
 * every handle is in use the pool goes over its cap until they are released (bounded by the
 * reads and writes running, which each hold a socket anyway).
 */
export class FileHandles {
  /** In least-recently-used order: a use moves its slot to the end. */
  private readonly slots = new Map<PooledFile, Slot>();
  private readonly dropped = new WeakSet<PooledFile>();

  constructor(
    readonly max = MAX_OPEN_FILES,
    /** How a handle is opened; a test can inject faults here. */
    public openFile: (path: string, flags: string) => Promise<FileHandle> = (path, flags) => open(path, flags),
  ) {}

  /** Handles open now (or opening). */
  get size(): number {
    return this.slots.size;
  }

  /** Create (or truncate) the file and keep its handle, as its first use. */
  async create(file: PooledFile): Promise<void> {
    await this.use(file, async () => undefined, 'w+');
  }

  /** Run `fn` on the file's handle, opening it if the pool closed it meanwhile. */
  async use<T>(file: PooledFile, fn: (fh: FileHandle) => Promise<T>, flags = 'r+'): Promise<T> {
    let slot = this.slots.get(file);
    if (slot) {
      this.slots.delete(file);
      this.slots.set(file, slot);
    } else {
      if (this.dropped.has(file)) throw Object.assign(new Error(`${file.path} is no longer in the piece store`), { code: 'EBADF' });
      slot = { fh: this.openRetrying(file.path, flags), users: 0, gone: false };
      this.slots.set(file, slot);
    }
    slot.users++;
    try {
      return await fn(await slot.fh);
    } catch (err) {
      // A handle that never opened is not kept: the next use tries again.
      if (this.slots.get(file) === slot && (await slot.fh.then(() => false, () => true))) this.slots.delete(file);
      throw err;
    } finally {
      slot.users--;
      if (slot.gone && slot.users === 0) void close(slot);
      this.trim();
    }
  }

  /** The file left the store: close its handle once nobody uses it, and never reopen it. */
  drop(file: PooledFile): void {
    this.dropped.add(file);
    const slot = this.slots.get(file);
    if (!slot) return;
    this.slots.delete(file);
    slot.gone = true;
    if (slot.users === 0) void close(slot);
  }

  /** Close idle handles, least recently used first, until `keep` are left; resolves once closed. */
  shed(keep = 0): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const [file, slot] of this.slots) {
      if (this.slots.size <= keep) break;
      if (slot.users > 0) continue;
      this.slots.delete(file);
      closing.push(close(slot));
    }
    return Promise.all(closing).then(() => undefined);
  }

  private trim(): void {
    if (this.slots.size > this.max) void this.shed(this.max);
  }

  /**
   * Out of descriptors, the handles idle here are the ones this process can give back at once:
   * close them and try once more before the failure reaches the download.
   */
  private async openRetrying(path: string, flags: string): Promise<FileHandle> {
    try {
      return await this.openFile(path, flags);
    } catch (err) {
      if (!isOutOfFds(err)) throw err;
      await this.shed();
      return this.openFile(path, flags);
    }
  }
}

function close(slot: Slot): Promise<void> {
  slot.gone = true;
  return slot.fh.then((fh) => fh.close()).catch(() => undefined);
}
