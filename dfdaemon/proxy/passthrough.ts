import { Agent as HttpAgent, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import httpProxy from 'http-proxy';
import type { Logger } from '../../shared/log/index.js';
import { upstreamTls } from '../../shared/tls/ca-store.js';

const httpAgent = new HttpAgent({ keepAlive: true });
const httpsAgents = new Map<string, HttpsAgent>();

function httpsAgent(insecure: boolean, ca: string[]): HttpsAgent {
  const key = `${insecure}|${ca.join('')}`;
  let a = httpsAgents.get(key);
  if (!a) {
    a = new HttpsAgent({ keepAlive: true, ...upstreamTls(insecure, ca) });
    httpsAgents.set(key, a);
  }
  return a;
}

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
    const https = u.protocol === 'https:';
    proxy.web(req, res, {
      target: u.origin,
      changeOrigin: opts.changeOrigin ?? false,
      secure: !opts.insecure,
      agent: https ? httpsAgent(opts.insecure ?? false, opts.ca ?? []) : httpAgent,
    });
  };
}
export type PassThrough = ReturnType<typeof createPassThrough>;
