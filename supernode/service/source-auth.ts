import type { CdnTask, SourceFailure } from '../cdn/cdn-task.js';

/** Attempts one registration may start or join before it takes the origin's refusal as final. */
export const MAX_AUTH_ATTEMPTS = 3;

/**
 * The CDN fetches a task once, with the headers of whoever started it, and joiners wait on
 * that fetch. If the origin refused those headers (401/403/407), a joiner that brings headers
 * the failed fetch did not send deserves its own attempt: Dragonfly keeps the first successful
 * registrant's headers. One that brings nothing new (an anonymous registrant, or the same
 * credentials) would only be refused again, so it gets the refusal and the origin is not asked.
 */
export function worthOwnAttempt(f: SourceFailure, failed: CdnTask, headers: Record<string, string>): boolean {
  if (f.code !== 'SOURCE_AUTH') return false;
  const sent = failed.req.headers;
  return Object.entries(headers).some(([k, v]) => sent[k] !== v);
}
