import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import type { DfdaemonConfig } from '../../shared/config/dfdaemon.js';
import type { Logger } from '../../shared/log/index.js';
import type { DfdaemonMetrics } from '../metrics.js';
import type { Downloader } from '../peer/downloader.js';
import type { PieceStore } from '../store/piece-store.js';
import { handleUpload, type UploaderOptions } from '../uploader/uploader.js';
import { createPassThrough } from './passthrough.js';
import { serveP2P } from './p2p-handler.js';
import { routeAbsolute, routeMirror, type Route } from './router.js';
import { tunnel } from './tunnel.js';

export interface ProxyDeps {
  cfg: DfdaemonConfig;
  downloader: Downloader;
  store: PieceStore;
  metrics: DfdaemonMetrics;
  log: Logger;
  uploader: UploaderOptions;
  /** Serve /peer/file/ on this server too (peerPort 0). */
  servesPeers: boolean;
}

function readCerts(paths: readonly string[]): string[] {
  return paths.map((p) => readFileSync(p, 'utf8'));
}

/** Upstream TLS settings for a host: the hijack_https host entry that matches it, if any. */
function tlsFor(cfg: DfdaemonConfig, url: string): { insecure: boolean; ca: string[] } {
  const u = new URL(url);
  const hostPort = `${u.hostname}:${u.port || (u.protocol === 'https:' ? 443 : 80)}`;
  const h = cfg.hijackHttps?.hosts.find((x) => x.regx.test(hostPort) || x.regx.test(u.host));
  return h ? { insecure: h.insecure, ca: readCerts(h.certs) } : { insecure: false, ca: [] };
}

/** Docker's HTTP(S)_PROXY endpoint, the registry mirror, and (by default) the peer uploader. */
export function createProxyServer(d: ProxyDeps): Server {
  const passThrough = createPassThrough(d.log);
  const p2pDeps = { downloader: d.downloader, store: d.store, passThrough, metrics: d.metrics, log: d.log };
  const mirror = d.cfg.registryMirror;
  const mirrorTls = { insecure: mirror.insecure, ca: readCerts(mirror.certs), changeOrigin: true };

  const dispatch = (req: IncomingMessage, res: ServerResponse, route: Route, tls: { insecure?: boolean; ca?: string[]; changeOrigin?: boolean }, label: string) => {
    if (route.kind === 'p2p') {
      d.metrics.requests.inc({ route: 'p2p' });
      return serveP2P(req, res, route.url, tls, p2pDeps);
    }
    d.metrics.requests.inc({ route: label });
    return passThrough(req, res, route.url, tls);
  };

  const onRequest = async (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    const method = req.method ?? 'GET';
    if (url.startsWith('/')) {
      if (url.startsWith('/peer/file/') && d.servesPeers) {
        d.metrics.requests.inc({ route: 'upload' });
        return handleUpload(req, res, d.uploader);
      }
      if (url === '/_ping' || url === '/server/ping') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('OK');
      if (url === '/metrics') {
        const body = await d.metrics.registry.metrics();
        return void res.writeHead(200, { 'content-type': d.metrics.registry.contentType }).end(body);
      }
      return dispatch(req, res, routeMirror(url, method, mirror.remote, mirror.direct), mirrorTls, 'mirror');
    }
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return void res.writeHead(400, { 'content-type': 'text/plain' }).end('malformed request URL\n');
    }
    if (parsed.protocol !== 'http:') return void res.writeHead(400, { 'content-type': 'text/plain' }).end('only http:// URLs are proxied; use CONNECT for https\n');
    const route = routeAbsolute(url, method, d.cfg.proxies);
    return dispatch(req, res, route, tlsFor(d.cfg, route.url), 'direct');
  };

  const server = createServer((req, res) => {
    onRequest(req, res).catch((err: Error) => {
      d.log.error({ err }, 'proxy request failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' }).end('internal error\n');
      else res.destroy();
    });
  });
  server.on('connect', (req, socket, head) => {
    d.metrics.requests.inc({ route: 'tunnel' });
    tunnel(req, socket, head, d.log);
  });
  return server;
}
