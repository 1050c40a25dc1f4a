import { statfs } from 'node:fs/promises';
import type { Logger } from 'pino';
import { storageFailure } from './failure.js';

/** Free bytes of the filesystem holding dir. */
export type FreeBytes = (dir: string) => Promise<number>;

export const statfsFree: FreeBytes = async (dir) => {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
};

/** What admission needs of a task: how much it has written since. */
interface Filling {
  writtenBytes: number;
  once(event: 'end', cb: () => void): unknown;
}

/** Disk GC passes asked for per refused fill, each only while the last one freed something. */
const ROOM_ROUNDS = 4;

/**
 * Lets a fill of known length start only when the disk holds it on top of what the fills
 * already running still have to write. Without this, three 200 MiB fills on 300 MiB all ran
 * until the disk was full and none finished; now the ones that fit finish, and the one that does
 * not is refused at once with LOCAL_STORAGE (its peers fetch from the origin, as on any CDN
 * failure) before the origin sends a byte more. Checks run one at a time, so two fills cannot
 * both count the same free space. A disk that cannot be asked admits: this guards, it does not
 * decide.
 */
export class DiskAdmission {
  private readonly owing = new Map<Filling, { need: number; base: number }>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly o: {
      homeDir: string;
      log: Logger;
      freeBytes?: FreeBytes;
      /** Ask disk GC for room; resolves to the bytes it freed. */
      makeRoom?: (bytes: number) => Promise<number>;
    },
  ) {}

  /** Bytes the admitted, unfinished fills still have to write. */
  owed(except?: Filling): number {
    let sum = 0;
    for (const [t, r] of this.owing) if (t !== except) sum += Math.max(0, Math.min(r.need, r.need - (t.writtenBytes - r.base)));
    return sum;
  }

  admit(task: Filling, need: number): Promise<void> {
    const check = this.queue.then(() => this.check(task, need));
    this.queue = check.catch(() => undefined);
    return check;
  }

  private async check(task: Filling, need: number): Promise<void> {
    for (let round = 0; ; round++) {
      const free = await (this.o.freeBytes ?? statfsFree)(this.o.homeDir).catch(() => Infinity);
      const owed = this.owed(task);
      const short = need + owed - free;
      if (short <= 0) break;
      const freed = round < ROOM_ROUNDS && this.o.makeRoom ? await this.o.makeRoom(short).catch(() => 0) : 0;
      if (freed > 0) continue;
      this.o.log.warn({ need, free, owed }, 'cdn fill refused: not enough disk');
      throw storageFailure(`not enough disk for this task: it needs ${need} bytes, ${free} are free and running fills still need ${owed} of them`);
    }
    this.owing.set(task, { need, base: task.writtenBytes });
    task.once('end', () => this.owing.delete(task));
  }
}
