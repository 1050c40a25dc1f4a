import { createHash } from 'node:crypto';

/** Salt Dragonfly 1.x mixes into every task ID (supernode task/manager_util.go). */
const TASK_ID_KEY = '>I$pg-~AS~sP\'rqu_`Oh&lz#9]"=;nE%';

/**
 * Task ID as Dragonfly computes it, so that a stock dfget, a preheat and a dfdaemon agree on
 * one task per blob. `sign` is the md5 when given, else the identifier.
 */
export function taskId(taskUrl: string, opts: { md5?: string; identifier?: string; range?: string } = {}): string {
  const sign = opts.md5 ? opts.md5 : (opts.identifier ?? '');
  const body = TASK_ID_KEY + taskUrl + sign + (opts.range ?? '') + TASK_ID_KEY;
  return createHash('sha256').update(body).digest('hex');
}

/**
 * Drop query parameters whose key is in `filter`, as Dragonfly's netutils.FilterURLParam does:
 * split on `&`, keep order, no decoding. Signed-URL keys (Expires, Signature) must not make
 * every request a new task.
 */
export function filterUrl(url: string, filter: readonly string[]): string {
  if (filter.length === 0) return url;
  const q = url.indexOf('?');
  if (q < 0) return url;
  const kept = url
    .slice(q + 1)
    .split('&')
    .filter((kv) => {
      const eq = kv.indexOf('=');
      const key = eq < 0 ? kv : kv.slice(0, eq);
      return !filter.includes(key);
    });
  return kept.length > 0 ? `${url.slice(0, q)}?${kept.join('&')}` : url.slice(0, q);
}

/** sha256 digest in an OCI blob URL (`.../blobs/sha256:<hex>`), if any. */
export function blobDigestOf(url: string): string | undefined {
  const m = /\/blobs\/sha256:([0-9a-f]{64})(?:[?#]|$)/.exec(url);
  return m ? m[1] : undefined;
}
