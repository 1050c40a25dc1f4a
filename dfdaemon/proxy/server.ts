import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import type { DfdaemonConfig } from '../../shared/config/dfdaemon.js';
import { badRequest, internal } from '../../shared/errors.js';
import { BoundedBufferPool } from '../../shared/io/bounded-pool.js';
import type { Logger } from '../../shared/log/index.js';
import type { DfdaemonMetrics } from '../metrics.js';
import type { Downloader } from '../peer/downloader.js';
import type { PieceStore } from '../store/piece-store.js';
import type { TaskFile } from '../store/task-file.js';
import { handleUpload, type Uploader } from '../uploader/uploader.js';
import { replyText } from '../../shared/http/text-reply.js';
import { sendError, socketError } from './errors.js';
import { createHijacker } from './hijack.js';
import type { HijackCerts } from './hijack-certs.js';
import { BLOB_CHUNK } from '../peer/ordered-stream.js';
import { guardConnections, proxyServerOptions } from './conn-limits.js';
import { proxyLimits, type ProxyLimits } from './limits.js';
import { createPassThrough } from './passthrough.js';
import { serveP2P } from './p2p-handler.js';
import { routeAbsolute, routeMirror, type Route } from './router.js';
import { tunnel } from './tunnel.js';
import { parseAuthority, UpstreamRules, type UpstreamTls } from './upstream-tls.js';

export interface ProxyDeps {
  cfg: DfdaemonConfig;
  downloader: Downloader;
  store: PieceStore;
  metrics: DfdaemonMetrics;
  log: Logger;
  uploader: Uploader;
  /** Serve /peer/file/ on this server too (peerPort 0). */
  servesPeers: boolean;
  /** Set when hijack_https has a cert and key. */
  certs?: HijackCerts;
  /** A task file was thrown away (failed its digest): withdraw it from its supernode. */
  onDiscard?: (tf: TaskFile) => void;
  /** certpem/keypem (PEM text): the proxy port itself speaks TLS. */
  tls?: { cert: string; key: string };
  /** Overrides of DEFAULT_PROXY_LIMITS (tests shorten the timeouts). */
  limits?: Partial<ProxyLimits>;
}

export interface ProxyServer {
  server: Server | HttpsServer;
  /** Servers whose 'request' events are requests running inside hijacked tunnels. */
  innerServers: Server[];
  /** Ends hijacked connections that have no request running (closeIdleConnections for tunnels). */
  closeIdleTunnels(): void;
  /** Destroy CONNECT tunnels and hijacked connections, which server.close() does not track. */
  destroyTunnels(): void;
  /** The read buffers blob responses share. */
  blobPool: BoundedBufferPool;
}

/** Docker's HTTP(S)_PROXY endpoint, the registry mirror, and (by default) the peer uploader. */
export function createProxyServer(d: ProxyDeps): ProxyServer {
  const limits = proxyLimits(d.limits);
  const passThrough = createPassThrough(d.log, limits);
  const blobPool = new BoundedBufferPool(BLOB_CHUNK, Math.max(1, Math.floor(limits.blobBufferBytes / BLOB_CHUNK)));
  const p2pDeps = {
    downloader: d.downloader,
    store: d.store,
    passThrough,
    metrics: d.metrics,
    log: d.log,
    onDiscard: d.onDiscard,
    blobPool,
    blobIdleMs: limits.blobIdleMs,
  };
  const upstream = new UpstreamRules(d.cfg);
  const mirror = d.cfg.registryMirror;
  const tunnels = new Set<Duplex>();

  /**
   * A handler's failure becomes a 500, or a cut connection once the body has started. It takes
   * a function, not its promise, so a synchronous throw (new URL on an odd request-target) is
   * caught too instead of ending the process.
   */
  const guard = (handler: () => Promise<void> | void, res: ServerResponse) => {
    new Promise<void>((resolve) => resolve(handler())).catch((err: Error) => {
      d.log.error({ err }, 'proxy request failed');
      if (!res.headersSent) sendError(res, internal('proxy request failed'));
      else res.destroy();
    });
  };

  const dispatch = (req: IncomingMessage, res: ServerResponse, route: Route, opts: UpstreamTls, label: string) => {
    if (route.kind === 'p2p') {
      d.metrics.requests.inc({ route: 'p2p' });
      return serveP2P(req, res, route.url, opts, p2pDeps);
    }
    d.metrics.requests.inc({ route: label });
    return passThrough(req, res, route.url, opts);
  };

  const hijack = d.certs
    ? createHijacker(
        d.certs,
        (req, res, target) =>
          guard(() => {
            // Inside the tunnel the CONNECT target is the authority: only origin-form requests,
            // so an absolute-form or `*` target cannot point this connection somewhere else.
            if (!(req.url ?? '').startsWith('/')) return sendError(res, badRequest('a request inside a hijacked tunnel must be origin-form (/path)'));
            // The URL the rules see is the one Dragonfly builds from the inner Host header, which
            // Go clients send without the default port: `https://harbor.example.com/...`.
            const host = target.host.includes(':') ? `[${target.host}]` : target.host;
            const authority = target.port === 443 ? host : `${host}:${target.port}`;
            const route = routeAbsolute(`https://${authority}${req.url}`, req.method ?? 'GET', d.cfg.proxies);
            const tls = route.redirected ? upstream.forUrl(route.url) : target.rule;
            return dispatch(req, res, route, tls, 'direct');
          }, res),
        d.log,
        { handshakeMs: limits.handshakeMs, headMs: limits.headersTimeoutMs, maxHandshakes: limits.maxHandshakes },
      )
    : undefined;

  const onRequest = async (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    const method = req.method ?? 'GET';
    if (url.startsWith('/')) {
      if (url.startsWith('/peer/file/') && d.servesPeers) {
        d.metrics.requests.inc({ route: 'upload' });
        return handleUpload(req, res, d.uploader);
      }
      if (url === '/_ping' || url === '/server/ping') return replyText(res, 200, 'OK');
      if (url === '/metrics') {
        const body = await d.metrics.registry.metrics();
        return void res.writeHead(200, { 'content-type': d.metrics.registry.contentType }).end(body);
      }
      return dispatch(req, res, routeMirror(url, method, mirror.remote, mirror.direct), upstream.mirror, 'mirror');
    }
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return sendError(res, badRequest('malformed request URL'));
    }
    if (parsed.protocol !== 'http:') return sendError(res, badRequest('only http:// URLs are proxied; use CONNECT for https'));
    const route = routeAbsolute(url, method, d.cfg.proxies);
    return dispatch(req, res, route, upstream.forUrl(route.url), 'direct');
  };

  const handler = (req: IncomingMessage, res: ServerResponse) => guard(() => onRequest(req, res), res);
  const options = proxyServerOptions(limits);
  const server = d.tls
    ? createHttpsServer({ ...options, cert: d.tls.cert, key: d.tls.key, handshakeTimeout: limits.handshakeMs }, handler)
    : createServer(options, handler);
  // CONNECT tunnels and hijacked connections count too: they stay the server's connections.
  guardConnections(server, limits, d.log, d.tls ? 'secureConnection' : 'connection');
  server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    tunnels.add(socket);
    socket.once('close', () => tunnels.delete(socket));
    // Node stops listening for errors on a socket it hands to 'connect'; without this, a client
    // that resets while we answer would be an uncaught exception.
    socket.on('error', (err) => {
      d.log.debug({ target: req.url, err: err.message }, 'CONNECT client error');
      socket.destroy();
    });
    const target = parseAuthority(req.url ?? '');
    if (!target) return socketError(socket, badRequest('CONNECT target must be host:port with a port from 1 to 65535'));
    const rule = hijack ? upstream.match(target.host, target.port) : undefined;
    if (rule && hijack) {
      d.metrics.requests.inc({ route: 'hijacked' });
      d.log.debug({ target: req.url }, 'hijacking CONNECT');
      void hijack(socket, head, { ...target, rule });
      return;
    }
    d.metrics.requests.inc({ route: 'tunnel' });
    tunnel(target, socket, head, d.log, limits.tunnelIdleMs);
  });
  return {
    server,
    innerServers: hijack ? [hijack.requests] : [],
    closeIdleTunnels: () => hijack?.closeIdle(),
    destroyTunnels: () => {
      for (const s of tunnels) s.destroy();
      tunnels.clear();
    },
    blobPool,
  };
}
