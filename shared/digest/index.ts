import { createHash } from 'node:crypto';

export function md5Hex(...parts: Buffer[]): string {
  const h = createHash('md5');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

export function sha256Hex(...parts: Buffer[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** Dragonfly's piece md5 string: md5 of the wrapped piece, then ':' and its wrapped length. */
export function pieceMd5String(md5: string, wrappedLen: number): string {
  return `${md5}:${wrappedLen}`;
}
