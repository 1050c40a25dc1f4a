import { createHash, type Hash } from 'node:crypto';
import { mkdir, open, rename, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { WRAP_OVERHEAD, type Layout } from '../../shared/protocol/pieces.js';
import type { PieceRecord } from './cutter.js';
import { dataFile, partFile } from './paths.js';
import { digestPiece, READ_CHUNK } from './piece-io.js';

/** The whole-file hashes, fed the bytes of every piece before some point. */
export type Hashes = { md5: Hash; sha256: Hash };
export const copyHashes = (h: Hashes): Hashes => ({ md5: h.md5.copy(), sha256: h.sha256.copy() });

/** A task's .part file: opened as it is when a previous run's work is to be re-verified, else new. */
export async function openTaskFile(homeDir: string, taskId: string, restored: boolean): Promise<FileHandle> {
  const part = partFile(homeDir, taskId);
  await mkdir(dirname(part), { recursive: true });
  if (restored) {
    // A finished file goes back to .part while it is re-verified, so nothing serves it early.
    const done = dataFile(homeDir, taskId);
    if (await stat(done).catch(() => undefined)) await rename(done, part);
    if (await stat(part).catch(() => undefined)) return open(part, 'r+');
  }
  return open(part, 'w+');
}

/**
 * Re-read what a previous run wrote: every piece must match its recorded digests, in order, and
 * each that does is handed to `onPiece`. Returns the first piece to fetch, with the whole-file
 * hashes fed up to it. Pieces are read in small chunks: a restart may verify several multi-GiB
 * tasks at once.
 */
export async function verifyRestored(fh: FileHandle, layout: Layout, recs: PieceRecord[], onPiece: (n: number, rec: PieceRecord) => void): Promise<{ next: number; hashes: Hashes }> {
  let md5 = createHash('md5');
  let sha256 = createHash('sha256');
  const buf = Buffer.allocUnsafe(READ_CHUNK);
  let n = 0;
  for (; n < layout.count; n++) {
    const rec = recs[n];
    if (!rec) break;
    const p = layout.piece(n);
    // Copies, so a piece that turns out bad leaves the whole-file hashes where they were.
    const next = { md5: md5.copy(), sha256: sha256.copy() };
    const got = await digestPiece(fh, p.start, p.contentLen + WRAP_OVERHEAD, [next.md5, next.sha256], buf);
    if (!got || got.md5 !== rec.md5 || got.sha256 !== rec.sha256) break;
    ({ md5, sha256 } = next);
    onPiece(n, rec);
  }
  return { next: n, hashes: { md5, sha256 } };
}
