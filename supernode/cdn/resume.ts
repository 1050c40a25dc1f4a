import { Readable } from 'node:stream';
import { contentRange, headerValue } from '../../shared/http/client.js';

type Headers = Record<string, string | string[] | undefined>;

/**
 * What identifies the content of the first answer, sent as If-Range when resuming: a strong
 * ETag, else Last-Modified (a weak ETag may not be used there).
 */
export function validatorOf(h: Headers): string | undefined {
  const etag = headerValue(h.etag);
  if (etag && !etag.startsWith('W/')) return etag;
  return headerValue(h['last-modified']);
}

/**
 * How the answer to a resume (`Range: bytes=from-`) continues a file of `fileLength` bytes: the
 * bytes to drop from its body first (an origin that ignores Range sends the whole file again),
 * or why it cannot. The pieces before `from` were announced to peers with their digests, so the
 * fill must go on in the same layout with the same content; it is never restarted from zero.
 */
export function resumeAnswer(status: number, h: Headers, length: number, from: number, fileLength: number, validator: string | undefined): { skip: number } | { changed: string } {
  if (status === 206) {
    const cr = contentRange(h);
    if (cr && cr.start === from && cr.total === fileLength) return { skip: 0 };
    return { changed: `the origin answered a resume from byte ${from} of ${fileLength} with ${headerValue(h['content-range']) ?? 'no Content-Range'}` };
  }
  if (length !== fileLength) return { changed: `the origin's length changed from ${fileLength} to ${length} during the fetch` };
  // With If-Range sent, a 200 means the validator no longer matches; an origin that ignores
  // Range sends the same one back, and its body is the same file from byte 0.
  if (validator !== undefined && validatorOf(h) !== validator) return { changed: `the origin's content changed during the fetch (${validator} → ${validatorOf(h) ?? 'none'})` };
  return { skip: from };
}

/** `body` without its first `n` bytes, which are still counted as read from the origin. */
export function skipBytes(body: Readable, n: number, onBytes?: (n: number) => void): Readable {
  if (n === 0) return body;
  async function* rest(): AsyncGenerator<Buffer> {
    let left = n;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        if (left >= chunk.length) {
          left -= chunk.length;
          onBytes?.(chunk.length);
          continue;
        }
        if (left > 0) onBytes?.(left);
        yield left > 0 ? chunk.subarray(left) : chunk;
        left = 0;
      }
    } finally {
      body.destroy();
    }
  }
  return Readable.from(rest(), { objectMode: false });
}
