import type { ServerResponse } from 'node:http';
import type { TokenBucket } from '../ratelimit/token-bucket.js';

/**
 * Cuts a response whose peer takes no bytes for `ms`: a peer that stops reading but keeps its
 * connection would otherwise hold the request, its file and its buffers for good. Waiting for
 * the bandwidth budget is not the peer stalling (with many uploads and a low limit that wait can
 * pass `ms`), so the timer is re-armed then: a flag, because timer calls around every chunk cost
 * measurable CPU at swarm rates.
 */
export class IdleCut {
  private waiting = false;

  constructor(
    private readonly res: ServerResponse,
    ms: number,
  ) {
    res.setTimeout(ms, () => {
      if (this.waiting) res.socket?.setTimeout(ms);
      else res.destroy();
    });
  }

  /** Take `n` bytes from the bucket; the wait does not count as the peer idling. */
  async take(bucket: TokenBucket, n: number, signal: AbortSignal): Promise<void> {
    this.waiting = true;
    await bucket.take(n, signal);
    this.waiting = false;
  }

  /** The response is over: a kept-alive socket must not carry the timer into the next request. */
  clear(): void {
    this.res.socket?.setTimeout(0);
  }
}
