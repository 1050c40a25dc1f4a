import type { ProxyRule } from '../../shared/config/dfdaemon.js';

export interface Route {
  kind: 'p2p' | 'direct';
  url: string;
  /** A `redirect` rule swapped the host: the upstream must see its own name in Host. */
  redirected: boolean;
}

const MIRROR_BLOB = /^.+\/blobs\/sha256.*$/;
/** A registry API path (Docker Registry HTTP API v2 / OCI distribution): `/v2` or `/v2/...`. */
const REGISTRY_API = /^\/v2(?:\/|$)/;
/** The one registry API request whose answer is immutable and content-addressed: a blob. */
const REGISTRY_BLOB = /\/blobs\/sha256:[0-9a-f]{64}$/;

/**
 * Dragonfly's proxies rules for a request with a full URL (HTTP_PROXY requests and hijacked
 * HTTPS ones): the first rule whose regx matches the URL wins; `use_https` upgrades the scheme,
 * `redirect` swaps the host (and port), `direct` skips P2P. Only GETs go through P2P; no
 * matching rule means pass-through.
 *
 * Of a registry's API (`/v2/...`) only blob GETs go through P2P: manifests, tags and `/v2/`
 * need their media type and Docker-Content-Digest, and a tag must never be served from a
 * cache. A rule written for a whole registry host (`regx: harbor.example.com`) still applies
 * its use_https/redirect to those, then passes them through. Any other URL a rule matches
 * (a `.*\.iso` download) goes through P2P as before.
 */
export function routeAbsolute(url: string, method: string, rules: readonly ProxyRule[]): Route {
  const rule = rules.find((r) => r.regx.test(url));
  if (!rule) return { kind: 'direct', url, redirected: false };
  const u = new URL(url);
  if (rule.useHttps) u.protocol = 'https:';
  if (rule.redirect) {
    // Host and port together, as Dragonfly's `req.URL.Host = rule.Redirect`: the URL.host
    // setter would keep the old port when the redirect names none.
    const { hostname, port } = splitRedirect(rule.redirect);
    u.hostname = hostname;
    u.port = port;
  }
  const target = u.toString();
  const registryOnly = REGISTRY_API.test(u.pathname) && !REGISTRY_BLOB.test(u.pathname);
  const kind = rule.direct || method !== 'GET' || registryOnly ? 'direct' : 'p2p';
  return { kind, url: target, redirected: rule.redirect !== '' };
}

/** `host`, `host:port`, `[v6]` or `[v6]:port` (validated when the config loaded). */
export function splitRedirect(redirect: string): { hostname: string; port: string } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(redirect);
  if (!m) throw new Error(`redirect ${JSON.stringify(redirect)} is not host[:port]`);
  return { hostname: m[1], port: m[2] ?? '' };
}

/** Registry-mirror mode: origin-form requests go to the remote; blob GETs through P2P. */
export function routeMirror(path: string, method: string, remote: string, direct: boolean): Route {
  // The origin as a URL writes it (no default port, lower-case host), so `remote:
  // https://harbor.test:443` gives the same task IDs as a hijacked pull or a preheat.
  const base = new URL(remote);
  const url = base.origin + base.pathname.replace(/\/+$/, '') + path;
  const kind = !direct && method === 'GET' && MIRROR_BLOB.test(path) ? 'p2p' : 'direct';
  return { kind, url, redirected: true };
}
