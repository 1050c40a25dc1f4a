import type { ProxyRule } from '../../shared/config/dfdaemon.js';

export type Route = { kind: 'p2p'; url: string } | { kind: 'direct'; url: string };

const MIRROR_BLOB = /^.+\/blobs\/sha256.*$/;

/**
 * Dragonfly's proxies rules for an absolute-URI request: the first rule whose regx matches the
 * full URL wins; `use_https` upgrades the scheme, `redirect` swaps the host, `direct` skips
 * P2P. Only GETs go through P2P; no matching rule means pass-through.
 */
export function routeAbsolute(url: string, method: string, rules: readonly ProxyRule[]): Route {
  const rule = rules.find((r) => r.regx.test(url));
  if (!rule) return { kind: 'direct', url };
  const u = new URL(url);
  if (rule.useHttps) u.protocol = 'https:';
  if (rule.redirect) u.host = rule.redirect;
  const target = u.toString();
  return rule.direct || method !== 'GET' ? { kind: 'direct', url: target } : { kind: 'p2p', url: target };
}

/** Registry-mirror mode: origin-form requests go to the remote; blob GETs through P2P. */
export function routeMirror(path: string, method: string, remote: string, direct: boolean): Route {
  const url = remote.replace(/\/+$/, '') + path;
  return !direct && method === 'GET' && MIRROR_BLOB.test(path) ? { kind: 'p2p', url } : { kind: 'direct', url };
}
