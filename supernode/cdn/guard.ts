import { createHash } from 'node:crypto';

/**
 * Headers that say nothing about who is asking. Every other header may be a credential: not only
 * Authorization and Cookie, but GitLab's PRIVATE-TOKEN, Artifactory's X-JFrog-Art-Api, X-Api-Key
 * and their like, so a fetch that carried any other header may have got private content.
 */
const HARMLESS_HEADERS = new Set([
  'range', 'user-agent', 'accept', 'accept-encoding', 'accept-language', 'cache-control', 'pragma',
  'if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range', 'connection',
  'host', 'te', 'via', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-real-ip',
  'docker-distribution-api-version',
]);

/** The credential headers of a request, names lower-cased, sorted: equal sets compare equal. */
export function credentialHeaders(h: Record<string, string>): [string, string][] {
  return Object.entries(h)
    .filter(([k]) => !HARMLESS_HEADERS.has(k.toLowerCase()))
    .map(([k, v]): [string, string] => [k.toLowerCase(), v])
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0));
}

/**
 * Whether what a fetch of `url` with `headers` got may be private: it carried a header that may
 * be a credential, or
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

/**
 * The Docker Registry HTTP API answers an unauthorised blob request 401, and redirects only an
 * authorised one to its storage: for a blob URL a 3xx is a yes. Anywhere else a 3xx may be a
 * login page's redirect, and only a 2xx is.
 */
export function redirectMeansYes(url: string): boolean {
  return /\/v2\/.+\/blobs\/sha256:[0-9a-f]{64}$/.test(new URL(url).pathname);
}
