import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { WRAP_TAIL, wrapHeader, WRAP_OVERHEAD, type Layout } from '../../shared/protocol/pieces.js';
import type { TokenBucket } from '../../shared/ratelimit/token-bucket.js';
import { digestPiece } from './piece-io.js';

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
 * Bytes held per download before they go to disk. Pieces reach 15 MiB, and holding one whole
 * per running download put six stalled 1 GiB fetches at 140 MB RSS; this keeps each at a few
 * hundred KiB whatever the piece size, while writes stay large enough to be cheap.
 */
const BATCH_BYTES = 256 * 1024;
/** Well under IOV_MAX, for origins that send many tiny chunks. */
const BATCH_BUFS = 256;

/**
 * Cut a source stream into wrapped pieces written at num * pieceSize. Bytes go to disk in
 * bounded batches as they arrive and are hashed on the way; a piece is announced through onPiece
 * only once all of it, header and tail included, is written and its digests are final, so
 * nothing is offered before it exists on disk. Awaiting each write is the backpressure toward
 * the origin.
 */
export async function cutPieces(opts: {
  body: Readable;
  fh: FileHandle;
  pieceSize: number;
  /** The expected layout, when the origin declared a length: each piece's header is known up front. */
  layout?: Layout;
  bucket?: TokenBucket;
  signal?: AbortSignal;
  onPiece: (num: number, rec: PieceRecord) => void;
  /** Each chunk read from the origin, as it arrives (metrics and GC pacing). */
  onBytes?: (n: number) => void;
  /** Resume: the first piece the body starts at, and hashes already fed the bytes before it. */
  startPiece?: number;
  hashes?: { md5: Hash; sha256: Hash };
}): Promise<CutResult> {
  const { body, fh, pieceSize, layout, bucket, signal, onPiece } = opts;
  const contentSize = pieceSize - WRAP_OVERHEAD;
  const fileMd5: Hash = opts.hashes?.md5 ?? createHash('md5');
  const fileSha: Hash = opts.hashes?.sha256 ?? createHash('sha256');
  let num = opts.startPiece ?? 0;
  let bytes = num * contentSize;

  // The piece being filled. Its md5 covers the header, which carries the content length: the
  // layout's when known, else a full piece; a piece that ends otherwise is re-hashed from disk.
  let fill = 0;
  let assumed = 0;
  let pieceMd5: Hash;
  let pieceSha: Hash;
  let batch: Buffer[] = [];
  let batchBytes = 0;
  let batchPos = 0;

  const begin = () => {
    assumed = layout && num < layout.count ? layout.piece(num).contentLen : contentSize;
    const header = wrapHeader(assumed, pieceSize);
    pieceMd5 = createHash('md5').update(header);
    pieceSha = createHash('sha256');
    fill = 0;
    batch = [header];
    batchBytes = header.length;
    batchPos = num * pieceSize;
  };

  // One write in flight while the next batch fills: awaiting every batch stalled the origin
  // socket behind the thread pool (busy with the download port's reads), and the swarm's origin
  // fetch fell from ~89 to 27-73 Mbit/s. Memory stays at two batches per download.
  let inflight: Promise<void> = Promise.resolve();
  const write = async () => {
    await inflight;
    const bufs = batch;
    const n = batchBytes;
    const pos = batchPos;
    batchPos += n;
    batch = [];
    batchBytes = 0;
    inflight = fh.writev(bufs, pos).then(({ bytesWritten }) => {
      if (bytesWritten !== n) throw new Error(`short write at ${pos}: ${bytesWritten} of ${n} bytes`);
    });
    // Surfaced by the next await of it; until then it must not count as unhandled.
    inflight.catch(() => undefined);
  };

  const complete = async () => {
    batch.push(TAIL);
    batchBytes += TAIL.length;
    await write();
    // Announced only once every byte of it is on disk.
    await inflight;
    const start = num * pieceSize;
    let md5: string;
    if (fill === assumed) {
      md5 = `${pieceMd5.update(TAIL).digest('hex')}:${fill + WRAP_OVERHEAD}`;
    } else {
      // The last piece of an origin that gave no length (or a wrong one): fix the header and
      // hash the piece again as written; it is at most one piece per download.
      const header = wrapHeader(fill, pieceSize);
      await fh.write(header, 0, header.length, start);
      const d = await digestPiece(fh, start, fill + WRAP_OVERHEAD);
      if (!d) throw new Error(`piece ${num} is short on disk right after writing it`);
      md5 = d.md5;
    }
    onPiece(num, { md5, sha256: pieceSha.digest('hex'), contentLen: fill });
    num++;
    begin();
  };

  begin();
  try {
    await cut();
  } finally {
    // The caller closes the file next: no write of ours may still be running then.
    await inflight.catch(() => undefined);
  }
  return { bytes, md5: fileMd5.digest('hex'), sha256: fileSha.digest('hex') };

  async function cut(): Promise<void> {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (bucket) await bucket.take(chunk.length, signal);
      bytes += chunk.length;
      opts.onBytes?.(chunk.length);
      fileMd5.update(chunk);
      fileSha.update(chunk);
      let off = 0;
      while (off < chunk.length) {
        const n = Math.min(contentSize - fill, chunk.length - off);
        const part = chunk.subarray(off, off + n);
        pieceMd5!.update(part);
        pieceSha!.update(part);
        batch.push(part);
        batchBytes += n;
        fill += n;
        off += n;
        if (fill === contentSize) await complete();
        else if (batchBytes >= BATCH_BYTES || batch.length >= BATCH_BUFS) await write();
      }
    }
    // An empty file is still one (empty) piece.
    if (fill > 0 || num === 0) await complete();
  }
}
