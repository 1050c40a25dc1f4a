/**
 * The error catalogue shared by supernode, dfdaemon and dfget.
 *
 * Every error the project raises on purpose is a `DfError` carrying a stable
 * `code` and the HTTP `status` an API layer should answer with. Codes are part
 * of the public surface (logs, JSON bodies, tests): once published a code is
 * never renamed, never given a different meaning and never reused. Retire a
 * code by leaving it in the table with `retired: true`.
 *
 * Legacy Dragonfly 1.x endpoints keep their own envelope (`{code,msg,data}`
 * with the 5xx/6xx codes of pkg/constants); those numbers live in
 * shared/protocol, not here.
 */

export interface ErrorSpec {
  /** HTTP status an API layer answers with. */
  readonly status: number;
  /** What the code means, for documentation and `--help` style listings. */
  readonly description: string;
  /** Retired codes stay listed so they are never reused. */
  readonly retired?: boolean;
}

export const ERROR_CATALOGUE = Object.freeze({
  CONFIG_INVALID: { status: 500, description: 'A configuration file or flag is invalid; the message names the key.' },
  BAD_REQUEST: { status: 400, description: 'The request is malformed or a parameter is invalid.' },
  UNAUTHORIZED: { status: 401, description: 'The request carries no valid credentials for this endpoint; the message says which are expected.' },
  NOT_FOUND: { status: 404, description: 'The requested resource does not exist.' },
  TASK_NOT_FOUND: { status: 404, description: 'No task with this ID is known to the supernode.' },
  PEER_NOT_FOUND: { status: 404, description: 'No peer (cid or peer ID) with this ID is known.' },
  SOURCE_UNREACHABLE: { status: 502, description: 'The origin could not be reached or answered 404.' },
  SOURCE_AUTH: { status: 502, description: 'The origin refused the request (401/407); upstreamStatus holds its status.' },
  SOURCE_TIMEOUT: { status: 504, description: 'The origin or a peer did not answer in time.' },
  DIGEST_MISMATCH: { status: 502, description: 'Downloaded content does not match its expected digest (sha256 or file md5).' },
  PIECE_MD5_MISMATCH: { status: 502, description: 'A piece does not match its expected md5.' },
  TOO_MANY_REQUESTS: { status: 429, description: 'Too much unfinished work of this kind (e.g. preheat jobs); retry later.' },
  PAYLOAD_TOO_LARGE: { status: 413, description: 'The request body exceeds the accepted size.' },
  UNSUPPORTED_MEDIA: { status: 415, description: 'The request body has an unsupported content type.' },
  LOCAL_STORAGE: { status: 507, description: "The supernode could not store content on its own disk (full, quota, read-only, I/O error); the origin is not at fault." },
  HOME_DIR_IN_USE: { status: 500, description: "Another running supernode holds this homeDir's metadata store." },
  ACCESS_DENIED: { status: 403, description: "The supernode fetched this task with credentials or a signed URL, and the origin refused this registrant's own (401/403/407/404); fetch from the origin." },
  ACCESS_UNVERIFIED: { status: 503, description: "The supernode fetched this task with credentials or a signed URL and could not ask the origin whether this registrant may have it (5xx, network error, timeout); retry." },
  INTERNAL: { status: 500, description: 'An unexpected internal error.' },
} satisfies Record<string, ErrorSpec>);

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export interface DfErrorOptions {
  cause?: unknown;
  /** Overrides the catalogue status (rarely needed). */
  status?: number;
  /** Structured context for logs; never sent to clients by toJSON(). */
  details?: Readonly<Record<string, unknown>>;
}

const BRAND = Symbol.for('dragonfly-ts.DfError');

export class DfError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, options: DfErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DfError';
    this.code = code;
    this.status = options.status ?? ERROR_CATALOGUE[code].status;
    this.details = options.details;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /** The client-facing body: never includes the cause or details. */
  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }

  /** instanceof that also works across duplicate copies of this module. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true
      && (this === DfError || Function.prototype[Symbol.hasInstance].call(this, value));
  }
}

/** A configuration error. `key` is the full key path (`base.peerUpLimit`, `proxies[0].regx`, `--port`). */
export class ConfigError extends DfError {
  readonly key: string;
  readonly value: unknown;

  constructor(key: string, reason: string, value?: unknown, options: Omit<DfErrorOptions, 'status'> = {}) {
    super('CONFIG_INVALID', key === '' ? reason : `${key}: ${reason}`, options);
    this.name = 'ConfigError';
    this.key = key;
    this.value = value;
  }
}

/** The origin answered 401/407. `upstreamStatus` and `wwwAuthenticate` say why. */
export class SourceAuthError extends DfError {
  readonly upstreamStatus: number;
  readonly wwwAuthenticate: string | undefined;

  constructor(url: string, upstreamStatus: number, wwwAuthenticate?: string, options: DfErrorOptions = {}) {
    super('SOURCE_AUTH', `source ${redactUrl(url)} answered ${upstreamStatus}`, {
      ...options,
      details: { ...options.details, upstreamStatus, wwwAuthenticate },
    });
    this.name = 'SourceAuthError';
    this.upstreamStatus = upstreamStatus;
    this.wwwAuthenticate = wwwAuthenticate;
  }
}

export const badRequest = (message: string, options?: DfErrorOptions): DfError =>
  new DfError('BAD_REQUEST', message, options);

export const notFound = (message: string, options?: DfErrorOptions): DfError =>
  new DfError('NOT_FOUND', message, options);

export const taskNotFound = (taskId: string): DfError =>
  new DfError('TASK_NOT_FOUND', `task ${taskId} not found`, { details: { taskId } });

export const peerNotFound = (peerId: string): DfError =>
  new DfError('PEER_NOT_FOUND', `peer ${peerId} not found`, { details: { peerId } });

export const sourceUnreachable = (url: string, cause?: unknown, upstreamStatus?: number): DfError =>
  new DfError('SOURCE_UNREACHABLE',
    `source ${redactUrl(url)} unreachable${upstreamStatus === undefined ? '' : ` (status ${upstreamStatus})`}`,
    { cause, details: { upstreamStatus } });

export const sourceAuth = (url: string, upstreamStatus: number, wwwAuthenticate?: string): SourceAuthError =>
  new SourceAuthError(url, upstreamStatus, wwwAuthenticate);

export const sourceTimeout = (what: string, ms: number, cause?: unknown): DfError =>
  new DfError('SOURCE_TIMEOUT', `${what} did not answer within ${ms} ms`, { cause, details: { timeoutMs: ms } });

export const digestMismatch = (what: string, expected: string, actual: string): DfError =>
  new DfError('DIGEST_MISMATCH', `${what}: digest mismatch, expected ${expected}, got ${actual}`,
    { details: { expected, actual } });

export const pieceMd5Mismatch = (pieceNum: number, expected: string, actual: string): DfError =>
  new DfError('PIECE_MD5_MISMATCH', `piece ${pieceNum}: md5 mismatch, expected ${expected}, got ${actual}`,
    { details: { pieceNum, expected, actual } });

export const payloadTooLarge = (limitBytes: number): DfError =>
  new DfError('PAYLOAD_TOO_LARGE', `request body exceeds ${limitBytes} bytes`, { details: { limitBytes } });

export const unsupportedMedia = (contentType: string | undefined): DfError =>
  new DfError('UNSUPPORTED_MEDIA', `unsupported content type ${JSON.stringify(contentType ?? '')}`);

export const internal = (message: string, cause?: unknown): DfError =>
  new DfError('INTERNAL', message, { cause });

export function isDfError(value: unknown, code?: ErrorCode): value is DfError {
  return value instanceof DfError && (code === undefined || value.code === code);
}

/** Wraps anything thrown into a DfError (INTERNAL unless it already is one), keeping the cause. */
export function toDfError(err: unknown): DfError {
  if (err instanceof DfError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return internal(message, err);
}

/** Drops userinfo and the query string, which may carry tokens (e.g. S3 `Signature`). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.origin === 'null') return url;
    return `${u.origin}${u.pathname}${u.search === '' ? '' : '?…'}`;
  } catch {
    return url;
  }
}

/**
 * One line for a daemon that could not start: the stable code of a DfError, else the message of
 * the error and of its cause (LevelDB's "failed to open" hides the EACCES that explains it).
 */
export function startupError(err: unknown): string {
  if (err instanceof DfError) return `${err.code}: ${err.message}`;
  const e = err as Error & { cause?: unknown };
  const cause = e?.cause instanceof Error && !e.message.includes(e.cause.message) ? `: ${e.cause.message}` : '';
  return `${e?.message ?? String(err)}${cause}`;
}
