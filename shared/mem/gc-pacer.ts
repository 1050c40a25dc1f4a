import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Gc = (opts?: { type?: 'minor' | 'major' }) => void;

/**
 * Every socket or file read hands JS a fresh 16-64 KiB buffer whose memory lives outside the V8
 * heap. We copy or forward it at once, so it dies young, but V8 only collects it at the next
 * scavenge, and the tiny wrappers fill a young generation slowly: V8 waits until about 64 MB
 * of such external memory has piled up. A daemon moving 100 MB/s then sits 30-40 MB above
 * what it uses (measured: a bare fetch-to-file at loopback speed peaked 48 MB anonymous
 * without help, 25 MB with a scavenge every 4 MiB, at no measurable cost in time).
 *
 * So the daemons count the bytes they move, and every `everyBytes` look at external memory: over
 * `externalLimit`, they ask for a scavenge. Forced scavenges also promote objects that would
 * have died young (a long-poll, a piece upload in flight) into the old generation, which then
 * grows until V8's next full GC (seen in the swarm benchmark: heap 14 -> 34 MB over a minute),
 * so every `majorEvery`-th forced collection is a full one.
 */
export class GcPacer {
  private gc: Gc | undefined;
  private moved = 0;
  private forced = 0;

  constructor(
    private readonly everyBytes = 4 * 1024 * 1024,
    private readonly externalLimit = 8 * 1024 * 1024,
    private readonly majorEvery = 16,
  ) {}

  /** Turn pacing on for this process (the daemons' main; tests leave it off). */
  enable(): void {
    if (this.gc) return;
    // --expose-gc set at runtime, and gc fetched from a fresh context so that no global
    // `gc` appears for the rest of the process.
    setFlagsFromString('--expose-gc');
    this.gc = runInNewContext('gc') as Gc;
  }

  /**
   * Counts what a stream we only pass along reads (a proxied upload, a CONNECT tunnel): its
   * chunks are socket buffers like any other, and five 200 MiB uploads at once left a
   * dfdaemon at 108-111 MB peak RSS when nothing counted them. A 'data' listener beside a
   * pipe() sees the same chunks and changes no flow control.
   */
  watch(stream: NodeJS.ReadableStream): void {
    if (this.gc) stream.on('data', (c: Buffer | string) => this.account(c.length));
  }

  account(bytes: number): void {
    if (!this.gc) return;
    this.moved += bytes;
    if (this.moved < this.everyBytes) return;
    this.moved = 0;
    if (getHeapStatistics().external_memory < this.externalLimit) return;
    this.forced++;
    // A bare gc() is the full collection (this V8 reads { type: 'major' } as a scavenge).
    if (this.forced % this.majorEvery === 0) this.gc();
    else this.gc({ type: 'minor' });
  }
}

/** One per process: all I/O paths count into it. */
export const ioGc = new GcPacer();
