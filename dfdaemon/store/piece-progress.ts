import { EventEmitter } from 'node:events';

/**
 * One fetch of one piece as it lands in the task file, so the uploader can pass the piece on
 * while it still arrives (cut-through). `written` counts the piece's content bytes already on
 * disk, from its first byte; the piece itself counts only once the fetch verified it ('done').
 * A relay sends what is written, and its last byte only after 'done', so a downstream never
 * gets a whole piece its upstream did not check; on 'failed' the relay cuts its connection.
 */
export class PieceProgress extends EventEmitter {
  written = 0;
  state: 'running' | 'done' | 'failed' = 'running';
  /** Uploads relaying this fetch: while there are any, the fetch writes in small batches. */
  readers = 0;

  constructor() {
    super();
    this.setMaxListeners(0);
  }

  advance(bytes: number): void {
    this.written += bytes;
    this.emit('change');
  }

  end(ok: boolean): void {
    if (this.state !== 'running') return;
    this.state = ok ? 'done' : 'failed';
    this.emit('change');
  }

  /** Settles once the fetch has ended, either way, or rejects when `signal` aborts. */
  async settled(signal?: AbortSignal): Promise<void> {
    while (this.state === 'running') await this.change(signal);
  }

  /** Settles at the next advance or end, or rejects when `signal` aborts. */
  change(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    if (this.state !== 'running') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onChange = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        this.off('change', onChange);
        reject(signal!.reason as Error);
      };
      this.once('change', onChange);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
