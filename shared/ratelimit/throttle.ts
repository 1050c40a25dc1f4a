import { Transform, type TransformCallback } from 'node:stream';
import type { TokenBucket } from './token-bucket.js';

/** A pass-through stream that lets bytes through only as fast as every bucket allows. */
export function throttle(buckets: readonly (TokenBucket | undefined)[], signal?: AbortSignal): Transform {
  const active = buckets.filter((b): b is TokenBucket => !!b && !b.unlimited);
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      if (active.length === 0) return cb(null, chunk);
      Promise.all(active.map((b) => b.take(chunk.length, signal))).then(
        () => cb(null, chunk),
        (err: unknown) => cb(err as Error),
      );
    },
  });
}
