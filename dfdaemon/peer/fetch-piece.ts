import { createHash } from 'node:crypto';
import { request, type Dispatcher } from 'undici';
import { WRAP_OVERHEAD, WRAP_TAIL } from '../../shared/protocol/pieces.js';
import type { TokenBucket } from '../../shared/ratelimit/token-bucket.js';
import type { TaskFile } from '../store/task-file.js';
import type { WirePiece } from './supernode-client.js';

/** Why a piece fetch failed, in the terms of Dragonfly's /peer/piece/error. */
export class PieceFetchError extends Error {
  constructor(
    readonly errorType: 'FILE_NOT_EXIST' | 'FILE_MD5_NOT_MATCH' | 'NETWORK',
    message: string,
    readonly realMd5 = '',
  ) {
    super(message);
  }
}

/**
 * Fetch one wrapped piece and write its content straight to the task file, hashing as it
 * streams so a piece never sits whole in memory. The piece is marked done only when length,
 * tail and digest (sha256 from our supernode, else md5) check out; a bad piece leaves no mark.
 */
export async function fetchPiece(
  p: WirePiece,
  tf: TaskFile,
  opts: { dispatcher: Dispatcher; signal?: AbortSignal; bucket?: TokenBucket; onBytes?: (n: number) => void },
): Promise<void> {
  const piece = tf.layout.piece(p.pieceNum);
  const expected = piece.contentLen + WRAP_OVERHEAD;
  let res: Dispatcher.ResponseData;
  try {
    res = await request(`http://${hostPort(p.peerIp, p.peerPort)}${p.path}`, {
      headers: { range: `bytes=${p.range}`, pieceNum: String(p.pieceNum), pieceSize: String(p.pieceSize), 'user-agent': 'dfget/1.0.6-ts' },
      dispatcher: opts.dispatcher,
      signal: opts.signal,
    });
  } catch (err) {
    throw new PieceFetchError('NETWORK', `piece ${p.pieceNum} from ${p.cid}: ${(err as Error).message}`);
  }
  if (res.statusCode < 200 || res.statusCode >= 300) {
    await res.body.dump();
    throw new PieceFetchError('FILE_NOT_EXIST', `piece ${p.pieceNum} from ${p.cid}: HTTP ${res.statusCode}`);
  }
  // A sha256 from our supernode makes the md5 redundant, and md5 is the slower of the two.
  const md5 = p.pieceSha256 ? undefined : createHash('md5');
  const sha = p.pieceSha256 ? createHash('sha256') : undefined;
  let seen = 0;
  let last = -1;
  try {
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      if (opts.bucket) await opts.bucket.take(chunk.length, opts.signal);
      if (seen + chunk.length > expected) throw new PieceFetchError('FILE_MD5_NOT_MATCH', `piece ${p.pieceNum} from ${p.cid} is too long`);
      md5?.update(chunk);
      // Content is everything after the 4-byte header and before the 1-byte tail.
      const from = Math.max(0, 4 - seen);
      const to = Math.min(chunk.length, expected - 1 - seen);
      if (to > from) {
        const content = chunk.subarray(from, to);
        sha?.update(content);
        if (!tf.has(p.pieceNum)) await tf.writeAt(content, piece.rawStart + seen + from - 4);
      }
      seen += chunk.length;
      last = chunk[chunk.length - 1];
      opts.onBytes?.(chunk.length);
    }
  } catch (err) {
    if (err instanceof PieceFetchError) throw err;
    throw new PieceFetchError('NETWORK', `piece ${p.pieceNum} from ${p.cid}: ${(err as Error).message}`);
  }
  const realMd5 = md5?.digest('hex') ?? '';
  if (seen !== expected || last !== WRAP_TAIL) {
    throw new PieceFetchError('FILE_MD5_NOT_MATCH', `piece ${p.pieceNum} from ${p.cid}: got ${seen} bytes, expected ${expected}`, realMd5);
  }
  const wantMd5 = p.pieceMd5.split(':')[0];
  if (md5 && wantMd5 && wantMd5 !== realMd5) {
    throw new PieceFetchError('FILE_MD5_NOT_MATCH', `piece ${p.pieceNum} from ${p.cid}: md5 ${realMd5} != ${wantMd5}`, realMd5);
  }
  if (sha && p.pieceSha256 !== sha.digest('hex')) {
    throw new PieceFetchError('FILE_MD5_NOT_MATCH', `piece ${p.pieceNum} from ${p.cid}: sha256 mismatch`, realMd5);
  }
  tf.markDone(p.pieceNum);
}

export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
