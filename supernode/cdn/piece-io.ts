import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { WRAP_OVERHEAD } from '../../shared/protocol/pieces.js';

/** Read size when re-hashing a piece from disk: pieces reach 15 MiB, the buffer must not. */
export const READ_CHUNK = 64 * 1024;

export interface PieceDigest {
  /** Dragonfly's "md5:wrappedLength" of the wrapped piece. */
  md5: string;
  /** sha256 of the content between header and tail. */
  sha256: string;
}

/**
 * Digest one wrapped piece as it sits in a file, reading it in bounded chunks. `content` hashes
 * are fed the piece's content too (a restore continues the whole-file hashes with them).
 * Undefined when the file ends before the piece does.
 */
export async function digestPiece(fh: FileHandle, start: number, wrappedLen: number, content: Hash[] = [], buf = Buffer.allocUnsafe(READ_CHUNK)): Promise<PieceDigest | undefined> {
  const md5 = createHash('md5');
  const sha256 = createHash('sha256');
  const end = wrappedLen - 1;
  let off = 0;
  while (off < wrappedLen) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, wrappedLen - off), start + off);
    if (bytesRead <= 0) return undefined;
    const b = buf.subarray(0, bytesRead);
    md5.update(b);
    // The content is wrapped-local [4, len - 1): the part of it this read holds.
    const lo = Math.max(WRAP_OVERHEAD - 1, off) - off;
    const hi = Math.min(end, off + bytesRead) - off;
    if (hi > lo) {
      const c = b.subarray(lo, hi);
      sha256.update(c);
      for (const h of content) h.update(c);
    }
    off += bytesRead;
  }
  return { md5: `${md5.digest('hex')}:${wrappedLen}`, sha256: sha256.digest('hex') };
}
