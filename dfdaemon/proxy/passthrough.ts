import type { IncomingMessage, ServerResponse } from 'node:http';
import httpProxy from 'http-proxy';
import { DfError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log/index.js';
import { ioGc } from '../../shared/mem/gc-pacer.js';
import { agentFor } from '../../shared/http/agents.js';
import { sendError } from './errors.js';
import { hopByHop, stripHopByHop } from './hop-by-hop.js';
import { DEFAULT_PROXY_LIMITS, type ProxyLimits } from './limits.js';

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
export function createPassThrough(log: Logger, idle: Pick<ProxyLimits, 'passIdleMs' | 'passBodyIdleMs'> = DEFAULT_PROXY_LIMITS) {
  const proxy = httpProxy.createProxyServer({ xfwd: false, ws: false, changeOrigin: true });
  // proxyTimeout aborts the upstream request, which then fails with the same "socket hang up"
  // as an upstream that closed without answering: only the former is a 504. (An Expect request
  // gets no 'proxyReq', so its timeout is reported as the 502 of a hang-up.)
  const timedOut = new WeakSet<IncomingMessage>();
  proxy.on('proxyReq', (proxyReq, req) => {
    // Connection itself leaves only the outgoing request: http-proxy reads the client's to
    // answer it (a 'close' must still close this side). http-proxy skips 'proxyReq' for Expect:
    // 100-continue, so the other hop-by-hop headers also leave req.headers before proxying.
    proxyReq.removeHeader('connection');
    proxyReq.once('timeout', () => timedOut.add(req));
  });
  proxy.on('proxyRes', (proxyRes, req) => {
    ioGc.watch(proxyRes);
    stripHopByHop(proxyRes.headers);
    // The client's own Connection tokens are not ours to echo: only close or keep-alive.
    proxyRes.headers.connection = /\bclose\b/i.test(String(req.headers.connection ?? '')) ? 'close' : 'keep-alive';
  });
  proxy.on('error', (err: NodeJS.ErrnoException, req, res) => {
    log.warn({ err: err.message }, 'pass-through failed');
    const r = res as ServerResponse;
    if (typeof r.writeHead !== 'function') return (res as { destroy(): void }).destroy();
    if (r.headersSent) return void r.destroy();
    const timeout = err.code === 'ETIMEDOUT' || timedOut.has(req);
    sendError(r, new DfError(timeout ? 'SOURCE_TIMEOUT' : 'SOURCE_UNREACHABLE', `upstream error: ${err.message}`));
  });
  return (req: IncomingMessage, res: ServerResponse, url: string, opts: PassOptions = {}) => {
    const u = new URL(url);
    req.url = u.pathname + u.search;
    // Read before Transfer-Encoding goes with the other hop-by-hop headers.
    const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
    for (const h of hopByHop(req.headers)) if (h !== 'connection') delete req.headers[h];
    proxy.web(req, res, {
      // An upload's answer comes after its last byte, and the registry may take minutes to give
      // it (moving a multi-GB layer into place on object storage); Docker waits for it without a
      // limit. Only a request without a body gets the short one.
      proxyTimeout: hasBody ? idle.passBodyIdleMs : idle.passIdleMs,
      target: u.origin,
      secure: !opts.insecure,
      agent: agentFor(u.href, opts.insecure ?? false, opts.ca ?? []),
    });
    // Only after web() has piped it: a 'data' listener added first would start the body
    // flowing before the upstream request has its socket, i.e. before 'proxyReq' may still
    // change its headers.
    ioGc.watch(req);
  };
}
export type PassThrough = ReturnType<typeof createPassThrough>;
