import { EventEmitter } from 'node:events';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { pieceSizeFor, Layout } from '../../shared/protocol/pieces.js';
import type { TokenBucket } from '../../shared/ratelimit/token-bucket.js';
import { cutPieces, type PieceRecord } from './cutter.js';
import { dataFile, partFile } from './paths.js';
import { openSource } from './source.js';

export type CdnStatus = 'WAITING' | 'RUNNING' | 'SUCCESS' | 'FAILED' | 'SOURCE_ERROR';

export interface CdnRequest {
  taskId: string;
  url: string;
  headers: Record<string, string>;
  insecure: boolean;
  rootCAs: string[];
  /** sha256 the whole content must have (from a blob URL); checked before the task succeeds. */
  expectSha256?: string;
}

/** Why a source fetch failed, in Dragonfly's terms: 607 unreachable, 609 auth, 500 other. */
export interface SourceFailure {
  dfCode: number;
  code: 'SOURCE_NOT_FOUND' | 'SOURCE_AUTH' | 'SOURCE_UNREACHABLE' | 'SOURCE_BAD_STATUS' | 'SOURCE_CORRUPT';
  message: string;
  upstreamStatus?: number;
}

/**
 * One blob fetched once from its origin. Emits 'piece' (num) as each piece lands on disk and
 * 'end' (ok) once; `ready` settles when the origin has answered with a length.
 */
export class CdnTask extends EventEmitter {
  status: CdnStatus = 'WAITING';
  fileLength = -1;
  pieceSize = 0;
  layout: Layout | undefined;
  readonly pieces: PieceRecord[] = [];
  failure: SourceFailure | undefined;
  bytesFromSource = 0;
  sha256: string | undefined;
  md5: string | undefined;
  readonly ready: Promise<void>;
  private resolveReady!: () => void;
  private rejectReady!: (f: SourceFailure) => void;
  private readonly abort = new AbortController();

  constructor(
    readonly req: CdnRequest,
    private readonly homeDir: string,
    private readonly bucket: TokenBucket | undefined,
    private readonly log: Logger,
  ) {
    super();
    this.ready = new Promise((res, rej) => {
      this.resolveReady = res;
      this.rejectReady = rej;
    });
    // Nobody may be waiting on ready when the task fails later; that is not an unhandled error.
    this.ready.catch(() => undefined);
  }

  get taskId(): string {
    return this.req.taskId;
  }

  /** The file that holds the verified pieces right now. */
  get path(): string {
    return this.status === 'SUCCESS' ? dataFile(this.homeDir, this.taskId) : partFile(this.homeDir, this.taskId);
  }

  hasPiece(num: number): boolean {
    return this.pieces[num] !== undefined;
  }

  cancel(): void {
    this.abort.abort();
  }

  async run(): Promise<void> {
    this.status = 'RUNNING';
    const part = partFile(this.homeDir, this.taskId);
    await mkdir(dirname(part), { recursive: true });
    const fh = await open(part, 'w+');
    try {
      const src = await openSource(this.req.url, { ...this.req, signal: this.abort.signal }).catch((err: Error) => {
        throw fail('SOURCE_UNREACHABLE', 607, `cannot reach ${this.req.url}: ${err.message}`);
      });
      if (src.status < 200 || src.status >= 300) {
        src.body.resume();
        throw statusFailure(src.status, this.req.url);
      }
      this.fileLength = src.length;
      this.pieceSize = pieceSizeFor(src.length);
      if (src.length >= 0) this.layout = new Layout(src.length, this.pieceSize);
      this.resolveReady();
      const result = await cutPieces({
        body: src.body,
        fh,
        pieceSize: this.pieceSize,
        bucket: this.bucket,
        signal: this.abort.signal,
        onPiece: (num, rec) => {
          this.pieces[num] = rec;
          this.bytesFromSource += rec.contentLen;
          this.emit('piece', num);
        },
      });
      if (this.fileLength >= 0 && result.bytes !== this.fileLength) {
        throw fail('SOURCE_CORRUPT', 500, `source sent ${result.bytes} bytes, expected ${this.fileLength}`);
      }
      if (this.req.expectSha256 && result.sha256 !== this.req.expectSha256) {
        throw fail('SOURCE_CORRUPT', 500, `sha256 ${result.sha256} does not match ${this.req.expectSha256}`);
      }
      if (this.fileLength < 0) {
        this.fileLength = result.bytes;
        this.layout = new Layout(result.bytes, this.pieceSize);
      }
      this.sha256 = result.sha256;
      this.md5 = result.md5;
      await fh.close();
      await rename(part, dataFile(this.homeDir, this.taskId));
      this.status = 'SUCCESS';
      this.log.info({ taskId: this.taskId, bytes: result.bytes, pieces: this.pieces.length }, 'cdn task done');
      this.emit('end', true);
    } catch (err) {
      await fh.close().catch(() => undefined);
      await rm(part, { force: true });
      this.failure = isFailure(err) ? err : fail('SOURCE_UNREACHABLE', 607, `source stream failed: ${(err as Error).message}`);
      this.status = this.failure.dfCode === 500 ? 'FAILED' : 'SOURCE_ERROR';
      this.log.warn({ taskId: this.taskId, url: this.req.url, failure: this.failure }, 'cdn task failed');
      this.rejectReady(this.failure);
      this.emit('end', false);
    }
  }
}

function fail(code: SourceFailure['code'], dfCode: number, message: string, upstreamStatus?: number): SourceFailure {
  return { code, dfCode, message, upstreamStatus };
}

function isFailure(e: unknown): e is SourceFailure {
  return typeof e === 'object' && e !== null && 'dfCode' in e && 'code' in e;
}

function statusFailure(status: number, url: string): SourceFailure {
  if (status === 404) return fail('SOURCE_NOT_FOUND', 607, `source answered 404 for ${url}`, status);
  if (status === 401 || status === 403 || status === 407) {
    return fail('SOURCE_AUTH', 609, `source answered ${status} for ${url}: authentication required`, status);
  }
  return fail('SOURCE_BAD_STATUS', 500, `source answered ${status} for ${url}`, status);
}
