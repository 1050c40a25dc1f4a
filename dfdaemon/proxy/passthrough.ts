import type { IncomingMessage, ServerResponse } from 'node:http';
import httpProxy from 'http-proxy';
import type { Logger } from '../../shared/log/index.js';
import { agentFor } from '../../shared/http/agents.js';

export interface PassOptions {
  /** Send the upstream's own host in Host (mirror and redirect); else keep the client's. */
  changeOrigin?: boolean;
  insecure?: boolean;
  /** Extra CA PEMs trusted for this upstream, on top of the system store. */
  ca?: string[];
}

/**
 * Everything that is not a P2P blob goes through unchanged: status, headers and body, so a 401
 * with WWW-Authenticate reaches Docker and token auth keeps working.
 */
export function createPassThrough(log: Logger) {
  const proxy = httpProxy.createProxyServer({ xfwd: false, ws: false, proxyTimeout: 120_000 });
  proxy.on('error', (err, _req, res) => {
    log.warn({ err: err.message }, 'pass-through failed');
    const r = res as ServerResponse;
    if (typeof r.writeHead !== 'function') return (res as { destroy(): void }).destroy();
    if (!r.headersSent) r.writeHead(502, { 'content-type': 'text/plain' }).end(`upstream error: ${err.message}\n`);
    else r.destroy();
  });
  return (req: IncomingMessage, res: ServerResponse, url: string, opts: PassOptions = {}) => {
    const u = new URL(url);
    req.url = u.pathname + u.search;
    delete req.headers['proxy-connection'];
    delete req.headers['proxy-authorization'];
    proxy.web(req, res, {
      target: u.origin,
      changeOrigin: opts.changeOrigin ?? false,
      secure: !opts.insecure,
      agent: agentFor(u.href, opts.insecure ?? false, opts.ca ?? []),
    });
  };
}
export type PassThrough = ReturnType<typeof createPassThrough>;
