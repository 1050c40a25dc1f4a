import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * The key to one task's pieces on the download port. A task ID is the sha256 of its URL, so
 * anyone who knows a URL could compute the path; the token is handed out only with piece infos
 * (/peer/task), i.e. to registered peers. The secret lives as long as the process: after a
 * restart the supernode knows no task, every poll is answered 404 and the peer registers
 * again, getting paths with the new secret, so a persisted one would buy nothing and would be
 * one more secret on disk.
 */
export class DownloadTokens {
  constructor(private readonly secret: Buffer = randomBytes(32)) {}

  /** HMAC-SHA256(secret, taskId), 256 bits as base64url. */
  token(taskId: string): string {
    return createHmac('sha256', this.secret).update(taskId).digest('base64url');
  }

  /** Constant-time: a wrong token says nothing about the right one. */
  check(taskId: string, token: string | null | undefined): boolean {
    if (!token) return false;
    const want = Buffer.from(this.token(taskId));
    const got = Buffer.from(token);
    return got.length === want.length && timingSafeEqual(got, want);
  }
}
