import { createHash } from 'node:crypto';

/** Headers that prove who is asking: a fetch that carried one got what that requester may see. */
const CREDENTIAL_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie']);

/** The credential headers of a request, names lower-cased, sorted: equal sets compare equal. */
export function credentialHeaders(h: Record<string, string>): [string, string][] {
  return Object.entries(h)
    .filter(([k]) => CREDENTIAL_HEADERS.has(k.toLowerCase()))
    .map(([k, v]): [string, string] => [k.toLowerCase(), v])
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0));
}

/**
 * Whether what a fetch of `url` with `headers` got may be private: it carried credentials, or
 * its URL had query parameters the task URL leaves out (a signed URL: the signature is the
 * credential). Peers of such a task are admitted only once the origin has let them in too.
 */
export function isGuarded(url: string, headers: Record<string, string>, taskUrl?: string): boolean {
  return credentialHeaders(headers).length > 0 || (taskUrl !== undefined && taskUrl !== url);
}

/** One value per (URL, credentials), without keeping the tokens themselves around. */
export function accessKey(url: string, headers: Record<string, string>): string {
  const h = createHash('sha256').update(url);
  for (const [k, v] of credentialHeaders(headers)) h.update(`\0${k}\0${v}`);
  return h.digest('base64url');
}
