import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { hostname } from 'node:os';
import type { AddressInfo, Server as NetServer } from 'node:net';
import { createSecureContext } from 'node:tls';
import type { DfdaemonConfig } from '../shared/config/dfdaemon.js';
import { ConfigError } from '../shared/errors.js';
import { createLogger, type Logger } from '../shared/log/index.js';
import { ioGc } from '../shared/mem/gc-pacer.js';
import { TokenBucket } from '../shared/ratelimit/token-bucket.js';
import { createDfdaemonMetrics, type DfdaemonMetrics } from './metrics.js';
import { Downloader } from './peer/downloader.js';
import { SupernodeClient, type SupernodeClientOptions } from './peer/supernode-client.js';
import { proxyLimits, type ProxyLimits } from './proxy/limits.js';
import { guardConnections, proxyServerOptions } from './proxy/conn-limits.js';
import { createProxyServer } from './proxy/server.js';
import { CacheGc } from './store/cache-gc.js';
import { PieceStore } from './store/piece-store.js';
import type { TaskFile } from './store/task-file.js';
import { PiecePaths } from './uploader/piece-path.js';
import { createUploader, handleUpload } from './uploader/uploader.js';

export interface Dfdaemon {
  port: number;
  peerPort: number;
  cid: string;
  /** The path this daemon registers for a task's pieces; the uploader serves no other. */
  piecePath(taskId: string): string;
  metrics: DfdaemonMetrics;
  store: PieceStore;
  client: SupernodeClient;
  gc: CacheGc;
  close(): Promise<void>;
}

export interface DfdaemonDeps {
  log?: Logger;
  host?: string;
  /** Clock for cache expiry and supernode retry (tests). */
  now?: () => number;
  supernode?: SupernodeClientOptions;
  /** How long close() lets running responses finish before cutting them (default DRAIN_MS). */
  drainMs?: number;
  /** Overrides of the proxy's connection and stream limits (tests shorten the timeouts). */
  proxyLimits?: Partial<ProxyLimits>;
}

/**
 * On SIGTERM a blob half sent is a failed layer for Docker, which then starts it over. Responses
 * already running get this long to finish; with the rest of close() (at most ~4 s) that stays
 * inside Docker's default 10 s stop grace period.
 */
const DRAIN_MS = 5_000;

/** The responses servers are sending, so close() can wait for them. */
function trackRequests(servers: Server[]): { readonly active: number; idle(): Promise<void>; closing(): void } {
  const running = new Set<ServerResponse>();
  const waiters: (() => void)[] = [];
  let closing = false;
  for (const server of servers) {
    server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
      running.add(res);
      // A keep-alive client that asks again while we close gets its answer on a connection
      // that then ends, instead of holding the drain open.
      if (closing) res.shouldKeepAlive = false;
      res.once('close', () => {
        running.delete(res);
        if (running.size === 0) for (const w of waiters.splice(0)) w();
      });
    });
  }
  return {
    get active() {
      return running.size;
    },
    idle: () => (running.size === 0 ? Promise.resolve() : new Promise<void>((r) => waiters.push(r))),
    closing() {
      closing = true;
      for (const res of running) if (!res.headersSent) res.shouldKeepAlive = false;
    },
  };
}

function listen(server: NetServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}

/** certpem/keypem as PEM text, checked to be a pair; undefined when dfdaemon speaks plain HTTP. */
function ownTls(cfg: DfdaemonConfig): { cert: string; key: string } | undefined {
  if (!cfg.certpem || !cfg.keypem) return undefined;
  const tls = { cert: readFileSync(cfg.certpem, 'utf8'), key: readFileSync(cfg.keypem, 'utf8') };
  try {
    createSecureContext(tls);
  } catch (err) {
    throw new ConfigError('keypem', `cannot serve TLS with ${cfg.certpem} and ${cfg.keypem}: ${(err as Error).message}`, cfg.keypem, { cause: err });
  }
  return tls;
}

/** Wires one dfdaemon: store, cache, supernode client, downloader, proxy and uploader. */
export async function startDfdaemon(cfg: DfdaemonConfig, deps: DfdaemonDeps = {}): Promise<Dfdaemon> {
  const log = deps.log ?? createLogger('dfdaemon', { debug: cfg.verbose });
  const host = deps.host ?? (cfg.listenIP || '0.0.0.0');
  const now = deps.now ?? Date.now;
  const metrics = createDfdaemonMetrics();
  const store = new PieceStore(cfg.localrepo, now);
  const leftovers = await store.ready();
  if (leftovers > 0) log.info({ removed: leftovers, dir: cfg.localrepo }, 'removed task files an earlier run left behind');
  const client = new SupernodeClient(cfg.nodes, log, { now, ...deps.supernode });
  const cid = `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
  const tls = ownTls(cfg);
  // Dragonfly runs dfget with `-s ratelimit --totallimit ratelimit` after dfget_flags, so
  // ratelimit is what a download and the host's uploads get, whatever dfget_flags says.
  if (cfg.dfget.localLimit !== undefined || cfg.dfget.totalLimit !== undefined) {
    log.warn(
      { ratelimit: cfg.ratelimit, locallimit: cfg.dfget.localLimit, totallimit: cfg.dfget.totalLimit },
      'ratelimit overrides -s/--locallimit and --totallimit in dfget_flags, as in Dragonfly',
    );
  }
  // node-forge is loaded only when hijacking: a few MB that a plain proxy need not carry.
  const certs = cfg.hijackHttps?.enabled
    ? (await import('./proxy/hijack-certs.js')).HijackCerts.fromFiles(cfg.hijackHttps.cert!, cfg.hijackHttps.key!, log, now)
    : undefined;
  // Not persisted: a restart empties the piece cache, and every task is registered afresh.
  const paths = new PiecePaths();
  const uploader = createUploader({
    store,
    log,
    paths,
    // Dragonfly hands each dfget `--totallimit ratelimit`: one budget for all of the host's uploads.
    bucket: new TokenBucket(cfg.ratelimit),
    maxConcurrent: cfg.maxConcurrentUploads,
    onBytes: (n) => {
      metrics.uploadBytes.inc(n);
      ioGc.account(n);
    },
    onRelay: () => metrics.relayedUploads.inc(),
  });
  // Tell the supernode not to send peers here for this task any more.
  const withdraw = (tf: TaskFile) => {
    if (tf.node) client.notify(tf.node, '/peer/service/down', { taskId: tf.taskId, cid }).catch(() => undefined);
  };
  const gc = new CacheGc(
    store,
    { expireMs: cfg.dfget.expireTime, limitBytes: cfg.cacheLimit },
    (tf) => {
      metrics.evictions.inc();
      withdraw(tf);
    },
    log,
  );
  gc.start(Math.max(1_000, Math.min(cfg.dfget.expireTime / 4, 60_000)));

  // The uploader port must be known before the downloader registers with it. Peers (a stock
  // dfget too) fetch pieces over plain HTTP: with TLS on the proxy port they get a port of
  // their own, an ephemeral one unless peerPort says, as Dragonfly's uploader had.
  let peerServer: Server | undefined;
  let peerPort = 0;
  const limits = proxyLimits(deps.proxyLimits);
  if (cfg.peerPort !== 0 || tls) {
    // Reachable by every peer like the proxy port, so it is held to the same connection limits.
    peerServer = createServer({ ...proxyServerOptions(limits), requestTimeout: 300_000 }, (req, res) => {
      metrics.requests.inc({ route: 'upload' });
      void handleUpload(req, res, uploader);
    });
    guardConnections(peerServer, limits, log);
    peerPort = await listen(peerServer, cfg.peerPort, host);
  }
  const downloader = new Downloader({
    store,
    client,
    cid,
    uploadPort: 0,
    localIP: cfg.localIP || (host !== '0.0.0.0' ? host : ''),
    paths,
    // containerd's hosts.toml mirror adds `?ns=<registry>` to every request: left in the task
    // URL, its blobs would never share a task with Docker's or a Harbor preheat's. The request
    // sent upstream keeps it; only the task ID leaves it out, as DF2 does by default.
    filter: [...new Set([...cfg.dfget.filter, 'ns'])],
    rate: cfg.ratelimit,
    reserve: (bytes) => gc.sweep(bytes),
    notbs: cfg.dfget.notbs,
    counters: {
      pieceBytes: (fromCdn, n) => {
        metrics.pieceBytes.inc({ source: fromCdn ? 'supernode' : 'peer' }, n);
        ioGc.account(n);
      },
      pieceFailed: (fromCdn) => metrics.pieceFailures.inc({ source: fromCdn ? 'supernode' : 'peer' }),
      pieceBusy: () => metrics.pieceBusy.inc(),
      pieceSlow: () => metrics.pieceSlow.inc(),
      sourceBytes: (n) => {
        metrics.sourceBytes.inc(n);
        ioGc.account(n);
      },
    },
    log,
  });
  const proxy = createProxyServer({ cfg, downloader, store, metrics, log, uploader, servesPeers: !peerServer, certs, onDiscard: withdraw, tls, limits });
  const servers = [proxy.server as Server, ...(peerServer ? [peerServer] : [])];
  // Requests inside hijacked tunnels (an HTTPS registry, the usual production case) drain too.
  const requests = trackRequests([...servers, ...proxy.innerServers]);
  const port = await listen(proxy.server, cfg.port, host);
  downloader.setUploadPort(peerServer ? peerPort : port);
  log.info({ port, peerPort: peerServer ? peerPort : port, cid, hijack: certs ? (certs.signsLeaves ? 'ca' : 'fixed') : 'off', tls: !!tls }, 'dfdaemon listening');

  return {
    port,
    peerPort: peerServer ? peerPort : port,
    cid,
    piecePath: (taskId) => paths.path(taskId),
    metrics,
    store,
    client,
    gc,
    async close() {
      gc.stop();
      // No new connections; blob responses already running may finish, for a while.
      const closed = Promise.all(servers.map((srv) => new Promise<void>((r) => srv.close(() => r()))));
      requests.closing();
      for (const srv of servers) srv.closeIdleConnections();
      proxy.closeIdleTunnels();
      const drainMs = deps.drainMs ?? DRAIN_MS;
      if (requests.active > 0 && drainMs > 0) {
        log.info({ responses: requests.active, drainMs }, 'shutting down: letting running responses finish');
        await Promise.race([requests.idle(), sleep(drainMs, undefined, { ref: false })]);
      }
      // From here no download registers anywhere, fails over or goes to the origin; the
      // registrations already sent complete, so the service-down below covers them.
      await downloader.close();
      proxy.destroyTunnels();
      for (const srv of servers) srv.closeAllConnections();
      await closed;
      // Last, so it also covers every task registered while the daemon was closing.
      await client.leave(uniqueTasks([...store.all(), ...downloader.registrations()]), cid);
      await client.close();
      await store.close();
    },
  };
}

/** Each (task, supernode) pair once. */
function uniqueTasks(tasks: { taskId: string; node: string | undefined }[]): { taskId: string; node: string }[] {
  const seen = new Map<string, { taskId: string; node: string }>();
  for (const t of tasks) if (t.node !== undefined) seen.set(`${t.taskId}@${t.node}`, { taskId: t.taskId, node: t.node });
  return [...seen.values()];
}
