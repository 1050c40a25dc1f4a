import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { WRAP_TAIL, wrapHeader, WRAP_OVERHEAD } from '../../shared/protocol/pieces.js';
import type { TokenBucket } from '../../shared/ratelimit/token-bucket.js';

export interface PieceRecord {
  /** Dragonfly's "md5:wrappedLength" of the wrapped piece. */
  md5: string;
  /** sha256 of the raw content, for peers that verify more strongly than md5. */
  sha256: string;
  contentLen: number;
}

export interface CutResult {
  bytes: number;
  md5: string;
  sha256: string;
}

const TAIL = Buffer.from([WRAP_TAIL]);

/**
 * Cut a source stream into wrapped pieces and write each at num * pieceSize. A piece is
 * announced through onPiece only after its bytes are written, so nothing is offered before it
 * exists on disk. Awaiting each write is the backpressure toward the origin.
 */
export async function cutPieces(opts: {
  body: Readable;
  fh: FileHandle;
  pieceSize: number;
  bucket?: TokenBucket;
  signal?: AbortSignal;
  onPiece: (num: number, rec: PieceRecord) => void;
  /** Resume: the first piece the body starts at, and hashes already fed the bytes before it. */
  startPiece?: number;
  hashes?: { md5: Hash; sha256: Hash };
}): Promise<CutResult> {
  const { body, fh, pieceSize, bucket, signal, onPiece } = opts;
  const contentSize = pieceSize - WRAP_OVERHEAD;
  const fileMd5: Hash = opts.hashes?.md5 ?? createHash('md5');
  const fileSha: Hash = opts.hashes?.sha256 ?? createHash('sha256');
  const buf = Buffer.allocUnsafe(contentSize);
  let fill = 0;
  let num = opts.startPiece ?? 0;
  let bytes = num * contentSize;

  const flush = async () => {
    const content = buf.subarray(0, fill);
    const header = wrapHeader(fill, pieceSize);
    await fh.writev([header, content, TAIL], num * pieceSize);
    const md5 = createHash('md5').update(header).update(content).update(TAIL).digest('hex');
    const sha256 = createHash('sha256').update(content).digest('hex');
    fileMd5.update(content);
    fileSha.update(content);
    onPiece(num, { md5: `${md5}:${fill + WRAP_OVERHEAD}`, sha256, contentLen: fill });
    num++;
    fill = 0;
  };

  for await (const chunk of body as AsyncIterable<Buffer>) {
    if (bucket) await bucket.take(chunk.length, signal);
    bytes += chunk.length;
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(contentSize - fill, chunk.length - off);
      chunk.copy(buf, fill, off, off + n);
      fill += n;
      off += n;
      if (fill === contentSize) await flush();
    }
  }
  if (fill > 0 || num === 0) await flush();
  return { bytes, md5: fileMd5.digest('hex'), sha256: fileSha.digest('hex') };
}
