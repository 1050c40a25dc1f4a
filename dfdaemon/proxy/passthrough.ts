import type { IncomingMessage, ServerResponse } from 'node:http';
import httpProxy from 'http-proxy';
import { DfError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log/index.js';
import { agentFor } from '../../shared/http/agents.js';
import { sendError } from './errors.js';
import { hopByHop, stripHopByHop } from './hop-by-hop.js';

export interface PassOptions {
  insecure?: boolean;
  /** Extra CA PEMs trusted for this upstream, on top of the system store. */
  ca?: string[];
}

/**
 * Everything that is not a P2P blob goes through unchanged: status, end-to-end headers and
 * body, so a 401 with WWW-Authenticate reaches Docker and token auth keeps working. Host is the
 * target URL's authority (RFC 9112 §3.2.2), which also covers mirror and `redirect` targets.
 */
export function createPassThrough(log: Logger) {
  const proxy = httpProxy.createProxyServer({ xfwd: false, ws: false, proxyTimeout: 120_000, changeOrigin: true });
  // Removed from the outgoing request, not from req.headers: http-proxy answers the client's own
  // Connection (a 'close' must still close this side).
  proxy.on('proxyReq', (proxyReq, req) => {
    for (const h of hopByHop(req.headers)) proxyReq.removeHeader(h);
  });
  proxy.on('proxyRes', (proxyRes) => stripHopByHop(proxyRes.headers));
  proxy.on('error', (err: NodeJS.ErrnoException, _req, res) => {
    log.warn({ err: err.message }, 'pass-through failed');
    const r = res as ServerResponse;
    if (typeof r.writeHead !== 'function') return (res as { destroy(): void }).destroy();
    if (r.headersSent) return void r.destroy();
    const timedOut = err.code === 'ETIMEDOUT' || err.code === 'ECONNRESET' && /hang up/.test(err.message);
    sendError(r, new DfError(timedOut ? 'SOURCE_TIMEOUT' : 'SOURCE_UNREACHABLE', `upstream error: ${err.message}`));
  });
  return (req: IncomingMessage, res: ServerResponse, url: string, opts: PassOptions = {}) => {
    const u = new URL(url);
    req.url = u.pathname + u.search;
    proxy.web(req, res, {
      target: u.origin,
      secure: !opts.insecure,
      agent: agentFor(u.href, opts.insecure ?? false, opts.ca ?? []),
    });
  };
}
export type PassThrough = ReturnType<typeof createPassThrough>;
