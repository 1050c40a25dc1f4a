import { createHash } from 'node:crypto';
import { WRAP_OVERHEAD, WRAP_TAIL } from '../../shared/protocol/pieces.js';
import { VERSION } from '../../shared/protocol/version.js';
import type { TokenBucket } from '../../shared/ratelimit/token-bucket.js';
import { LocalStorageError } from '../store/disk-error.js';
import type { PieceProgress } from '../store/piece-progress.js';
import type { TaskFile } from '../store/task-file.js';
import { READ_BUFFER, type PieceClient } from './piece-client.js';
import type { FetchMeter, SlowSourceWatch } from './slow-source.js';
import type { WirePiece } from './supernode-wire.js';

/** Bytes gathered before one write to the task file: few syscalls, little memory. */
const WRITE_BATCH = 1024 * 1024;
/** The batch while another peer relays this piece from us: each hop then adds ~1 batch of delay. */
const RELAY_BATCH = 128 * 1024;
const pool: Buffer[] = [];
const POOL_MAX = 8;

/** Why a piece fetch failed, in the terms of Dragonfly's /peer/piece/error. */
export class PieceFetchError extends Error {
  constructor(
    readonly errorType: 'FILE_NOT_EXIST' | 'FILE_MD5_NOT_MATCH' | 'NETWORK',
    message: string,
    readonly realMd5 = '',
    /** The source answered 503: its upload slots are taken, which is no fault of its own. */
    readonly busy = false,
  ) {
    super(message);
  }
}

/**
 * Fetch one wrapped piece and write its content to the task file, hashing as it streams so a
 * piece never sits whole in memory. The piece is marked done only when length, tail and
 * digest (sha256 from our supernode, else md5) check out; a bad piece leaves no mark. What is
 * written is announced on a PieceProgress, so the uploader can relay the piece as it arrives.
 */
export async function fetchPiece(p: WirePiece, tf: TaskFile, opts: FetchOptions): Promise<void> {
  // The supernode may hand a piece out again (its timeout) while the first fetch still runs. Two
  // fetches writing one region could leave bytes neither verified under a piece one of them marks
  // done, so a second fetch waits for the first's outcome and only runs if it failed.
  for (let earlier = tf.receiving(p.pieceNum); earlier; earlier = tf.receiving(p.pieceNum)) await earlier.settled();
  if (tf.has(p.pieceNum)) return;
  const prog = tf.startPiece(p.pieceNum);
  // Measured from here: time spent waiting on an earlier fetch says nothing of this source.
  const meter = opts.watch?.start(p.cid, p.cid.startsWith('cdnnode:'), tf.layout.piece(p.pieceNum).contentLen + WRAP_OVERHEAD, opts.signal);
  const signal = meter?.signal ?? opts.signal;
  let ok = false;
  try {
    await fetchInto(p, tf, { ...opts, signal }, prog, meter);
    ok = true;
  } finally {
    if (meter) opts.watch!.end(meter, ok);
    tf.endPiece(p.pieceNum, prog, ok);
  }
}

interface FetchOptions {
  client: PieceClient;
  signal?: AbortSignal;
  bucket?: TokenBucket;
  onBytes?: (n: number) => void;
  /** Judges this fetch against the download's others, and cuts it off when its source is slow. */
  watch?: SlowSourceWatch;
}

async function fetchInto(p: WirePiece, tf: TaskFile, opts: FetchOptions, prog: PieceProgress, meter?: FetchMeter): Promise<void> {
  const piece = tf.layout.piece(p.pieceNum);
  const expected = piece.contentLen + WRAP_OVERHEAD;
  const who = `piece ${p.pieceNum} from ${p.cid}`;
  // Without a digest, whatever the source sends would be stored, streamed and passed on as
  // verified; such a piece is refused before a byte moves.
  if (!p.pieceSha256 && !(p.pieceMd5 ?? '').split(':')[0]) throw new PieceFetchError('FILE_MD5_NOT_MATCH', `${who}: the supernode gave no digest to verify it against`);
  // A sha256 from our supernode makes the md5 redundant, and md5 is the slower of the two.
  const md5 = p.pieceSha256 ? undefined : createHash('md5');
  const sha = p.pieceSha256 ? createHash('sha256') : undefined;
  const limited = opts.bucket && !opts.bucket.unlimited ? opts.bucket : undefined;
  // Reads are only valid during the callback, so content is copied into a batch buffer with
  // room for one more read past the flush mark.
  const batch = pool.pop() ?? Buffer.allocUnsafeSlow(WRITE_BATCH + READ_BUFFER);
  let fill = 0;
  let batchPos = 0;
  let seen = 0;
  let last = -1;
  let writing: Promise<void> = Promise.resolve();
  // Counted per batch, not per read: a labelled counter update costs more than a read.
  let uncounted = 0;
  const flush = () => {
    const n = fill;
    fill = 0;
    if (uncounted > 0) opts.onBytes?.(uncounted);
    uncounted = 0;
    if (n === 0) return (writing = Promise.resolve());
    const write = tf.has(p.pieceNum) ? Promise.resolve() : tf.writeAt(batch.subarray(0, n), batchPos);
    writing = write.then(() => prog.advance(n));
    return writing;
  };
  try {
    await opts.client.get(
      p.peerIp,
      p.peerPort,
      p.path,
      { Range: `bytes=${p.range}`, pieceNum: String(p.pieceNum), pieceSize: String(p.pieceSize), 'User-Agent': `dfget/${VERSION}` },
      {
        head(status, length, relayed) {
          if (status < 200 || status >= 300) throw new PieceFetchError('FILE_NOT_EXIST', `${who}: HTTP ${status}`, '', status === 503);
          if (length !== expected) throw new PieceFetchError('FILE_MD5_NOT_MATCH', `${who}: ${length} bytes, expected ${expected}`);
          if (meter && relayed) meter.relayed = true;
        },
        data(chunk) {
          md5?.update(chunk);
          // Content is everything after the 4-byte header and before the 1-byte tail.
          const from = Math.max(0, 4 - seen);
          const to = Math.min(chunk.length, expected - 1 - seen);
          if (to > from) {
            sha?.update(chunk.subarray(from, to));
            if (fill === 0) batchPos = piece.rawStart + seen + from - 4;
            fill += chunk.copy(batch, fill, from, to);
          }
          seen += chunk.length;
          if (meter) meter.bytes = seen;
          last = chunk[chunk.length - 1];
          uncounted += chunk.length;
          const wrote = fill >= (prog.readers > 0 ? RELAY_BATCH : WRITE_BATCH) ? flush() : undefined;
          const pacing = limited?.take(chunk.length, opts.signal);
          return wrote && pacing ? Promise.all([wrote, pacing]).then(() => undefined) : (wrote ?? pacing);
        },
      },
      opts.signal,
    );
    await flush();
  } catch (err) {
    // Our own disk refused the bytes: no fault of the source, and no other source would do better.
    if (err instanceof PieceFetchError || err instanceof LocalStorageError) throw err;
    throw new PieceFetchError('NETWORK', `${who}: ${(err as Error).message}`);
  } finally {
    // A failed fetch may still be writing from the batch; it goes back to the pool after.
    await writing.catch(() => undefined);
    if (pool.length < POOL_MAX) pool.push(batch);
  }
  const realMd5 = md5?.digest('hex') ?? '';
  if (seen !== expected || last !== WRAP_TAIL) {
    throw new PieceFetchError('FILE_MD5_NOT_MATCH', `${who}: got ${seen} bytes, expected ${expected}`, realMd5);
  }
  const wantMd5 = p.pieceMd5.split(':')[0];
  if (md5 && wantMd5 && wantMd5 !== realMd5) {
    throw new PieceFetchError('FILE_MD5_NOT_MATCH', `${who}: md5 ${realMd5} != ${wantMd5}`, realMd5);
  }
  if (sha && p.pieceSha256 !== sha.digest('hex')) {
    throw new PieceFetchError('FILE_MD5_NOT_MATCH', `${who}: sha256 mismatch`, realMd5);
  }
  tf.markDone(p.pieceNum);
}
