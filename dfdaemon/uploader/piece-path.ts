import { TaskTokens } from '../../shared/protocol/task-token.js';

/** 128 bits of HMAC: far beyond guessing at any request rate the upload port allows. */
const TOKEN_BYTES = 16;

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
  private readonly tokens: TaskTokens;

  /** `secret` is for tests that want fixed names; a daemon takes 32 random bytes. */
  constructor(secret?: Buffer) {
    this.tokens = new TaskTokens(secret, TOKEN_BYTES, 'hex');
  }

  /** The file name for `taskId` under /peer/file/. */
  name(taskId: string): string {
    return `${taskId}-${this.tokens.token(taskId)}`;
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
    const taskId = name.slice(0, dash);
    return this.tokens.check(taskId, name.slice(dash + 1)) ? taskId : undefined;
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
