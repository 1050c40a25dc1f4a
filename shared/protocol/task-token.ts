import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * A per-task key to a piece port. A task ID is the sha256 of its URL, so a path made of the ID
 * alone could be worked out by anyone who knows a private layer's URL; a path that also carries
 * an HMAC of the ID under a secret of the serving process can only be learnt from the supernode,
 * which hands it to registered peers. dfdaemon's uploader (piece-path.ts) and the supernode's
 * download port (download-token.ts) both serve by one.
 */
export class TaskTokens {
  private readonly secret: Buffer;

  /** `secret` is for tests that want fixed tokens; a daemon takes 32 random bytes. */
  constructor(
    secret: Buffer = randomBytes(32),
    private readonly bytes = 32,
    private readonly encoding: 'hex' | 'base64url' = 'base64url',
  ) {
    if (secret.length < 16) throw new Error('task token secret must be at least 16 bytes');
    this.secret = Buffer.from(secret);
  }

  /** HMAC-SHA256(secret, taskId), its first `bytes` bytes, encoded. */
  token(taskId: string): string {
    return createHmac('sha256', this.secret).update(taskId).digest().subarray(0, this.bytes).toString(this.encoding);
  }

  /** Constant-time in the token: a wrong one says nothing about the right one, byte by byte. */
  check(taskId: string, token: string | null | undefined): boolean {
    if (!token) return false;
    const want = Buffer.from(this.token(taskId));
    const got = Buffer.from(token);
    return got.length === want.length && timingSafeEqual(got, want);
  }
}
