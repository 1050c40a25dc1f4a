/**
 * Piece maths of Dragonfly 1.x. A piece on the wire is "wrapped": a 4-byte big-endian header,
 * the content, then one 0x7f byte. `pieceSize` always includes those 5 bytes, and ranges on the
 * wire are offsets into the wrapped layout (piece n starts at n * pieceSize).
 */
export const MiB = 1024 * 1024;
export const WRAP_OVERHEAD = 5;
export const WRAP_TAIL = 0x7f;
const DEFAULT_PIECE = 4 * MiB;
const MAX_PIECE = 15 * MiB;

const MIN_PIECE = 256 * 1024;
/** Pieces a blob is cut into at least (down to MIN_PIECE), so a swarm can pipeline it. */
const MIN_COUNT = 64;

/**
 * Dragonfly's computePieceSize (4 MiB up to 200 MiB or unknown, then growing to 15 MiB) as a
 * ceiling, but never so large that a blob has fewer than MIN_COUNT pieces: every hop of a piece
 * through the swarm is store-and-forward, so a 4 MiB piece costs 0.35 s per hop at 100 Mbit/s,
 * and a 2 MiB layer in one piece cannot be pipelined at all. Stock dfget takes any size.
 */
export function pieceSizeFor(fileLength: number): number {
  const ceiling = fileLength <= 200 * MiB ? DEFAULT_PIECE : Math.min((Math.floor(fileLength / (100 * MiB)) - 2) * MiB + DEFAULT_PIECE, MAX_PIECE);
  if (fileLength < 0) return ceiling;
  let size = MIN_PIECE;
  while (size * 2 <= fileLength / MIN_COUNT && size * 2 <= ceiling) size *= 2;
  return Math.min(size, ceiling);
}

export interface Piece {
  num: number;
  /** Raw byte offset of the content in the file. */
  rawStart: number;
  contentLen: number;
  /** Wrapped offsets, inclusive, as in a wire `range` string. */
  start: number;
  end: number;
}

export class Layout {
  readonly contentSize: number;
  readonly count: number;
  constructor(readonly fileLength: number, readonly pieceSize: number) {
    this.contentSize = pieceSize - WRAP_OVERHEAD;
    // An empty file is still one (empty) piece, as Dragonfly's CDN writes it.
    this.count = fileLength < 0 ? 0 : Math.max(1, Math.ceil(fileLength / this.contentSize));
  }

  piece(num: number): Piece {
    const rawStart = num * this.contentSize;
    const contentLen = Math.min(this.contentSize, this.fileLength - rawStart);
    const start = num * this.pieceSize;
    return { num, rawStart, contentLen, start, end: start + contentLen + WRAP_OVERHEAD - 1 };
  }

  /** The piece a wire range names, or undefined when it is not exactly one piece. */
  fromRange(range: string): Piece | undefined {
    const r = parseRange(range);
    if (!r || r.start % this.pieceSize !== 0) return undefined;
    const num = r.start / this.pieceSize;
    if (num >= this.count) return undefined;
    const p = this.piece(num);
    return p.end === r.end ? p : undefined;
  }
}

export function rangeString(p: Piece): string {
  return `${p.start}-${p.end}`;
}

export function parseRange(s: string): { start: number; end: number } | undefined {
  const m = /^(?:bytes=)?(\d{1,15})-(\d{1,15})$/.exec(s.trim());
  if (!m) return undefined;
  const start = Number(m[1]);
  const end = Number(m[2]);
  return end >= start ? { start, end } : undefined;
}

/** The 4-byte piece header Dragonfly's CDN writes: contentLen | (pieceSize << 4). */
export function wrapHeader(contentLen: number, pieceSize: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE((contentLen | (pieceSize << 4)) >>> 0);
  return b;
}
