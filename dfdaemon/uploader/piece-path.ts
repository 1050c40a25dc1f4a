import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** 128 bits of HMAC: far beyond guessing at any request rate the upload port allows. */
const TOKEN_BYTES = 16;
const TOKEN_RE = /^[0-9a-f]{32}$/;

/**
 * The names our uploader serves pieces under: `<taskId>-<token>`, the token an HMAC of the task
 * ID under a secret of this process. A task ID is the sha256 of its URL, so a bare task ID would
 * let anyone who can reach the upload port and knows a private layer's URL read it, bypassing
 * the registry's permission. Only the supernodes we register with learn the name, and they hand
 * it only to the peers of that task, as with stock Dragonfly's `<basename>-<sign>` names.
 *
 * The secret is never stored: a restarted dfdaemon starts with an empty piece cache and
 * registers each task it serves again, under its new names.
 */
export class PiecePaths {
  private readonly secret: Buffer;

  /** `secret` is for tests that want fixed names; a daemon takes 32 random bytes. */
  constructor(secret: Buffer = randomBytes(32)) {
    if (secret.length < 16) throw new Error('piece path secret must be at least 16 bytes');
    this.secret = Buffer.from(secret);
  }

  private token(taskId: string): Buffer {
    return createHmac('sha256', this.secret).update(taskId).digest().subarray(0, TOKEN_BYTES);
  }

  /** The file name for `taskId` under /peer/file/. */
  name(taskId: string): string {
    return `${taskId}-${this.token(taskId).toString('hex')}`;
  }

  /** The path we register for `taskId`, which peers then fetch its pieces from. */
  path(taskId: string): string {
    return `/peer/file/${this.name(taskId)}`;
  }

  /**
   * The task ID a name stands for, or undefined when its token is not ours (missing, wrong, or
   * a bare task ID). Constant time in the token, so its bytes cannot be found one by one.
   */
  taskOf(name: string): string | undefined {
    const dash = name.lastIndexOf('-');
    if (dash <= 0) return undefined;
    const hex = name.slice(dash + 1);
    if (!TOKEN_RE.test(hex)) return undefined;
    const taskId = name.slice(0, dash);
    return timingSafeEqual(Buffer.from(hex, 'hex'), this.token(taskId)) ? taskId : undefined;
  }
}

let processPaths: PiecePaths | undefined;

/**
 * One secret per process, for an uploader and a downloader that were not handed one (dfget, and
 * tests that build them apart): both sides then agree without being wired together.
 */
export function defaultPiecePaths(): PiecePaths {
  return (processPaths ??= new PiecePaths());
}
