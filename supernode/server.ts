import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { SupernodeConfig } from '../shared/config/supernode.js';
import { createLogger, type Logger } from '../shared/log/index.js';
import { TokenBucket } from '../shared/ratelimit/token-bucket.js';
import { buildApi } from './api/app.js';
import { createDownloadServer } from './api/download-server.js';
import { mkdir } from 'node:fs/promises';
import { ioGc } from '../shared/mem/gc-pacer.js';
import { Cdn } from './cdn/cdn.js';
import { DownloadTokens } from './cdn/download-token.js';
import { LevelMetaStore } from './cdn/meta-store.js';
import type { probeSource } from './cdn/source.js';
import { preheatRoutes } from './preheat/index.js';
import { v1Routes } from './api/v1-routes.js';
import { GcRunner, type FreeBytes } from './gc/runner.js';
import { createSupernodeMetrics, type SupernodeMetrics } from './metrics.js';
import type { PieceChecker } from './service/cdn-repair.js';
import { TaskService } from './service/tasks.js';

/** Connections the kernel may queue for each port before the supernode accepts them. */
export const LISTEN_BACKLOG = 4096;

export interface Supernode {
  gc: GcRunner;
  api: FastifyInstance;
  download: Server;
  svc: TaskService;
  cdn: Cdn;
  metrics: SupernodeMetrics;
  apiPort: number;
  downloadPort: number;
  /** The download-port path of a task's pieces, token included, as piece infos give it. */
  downloadPath(taskId: string): string;
  close(): Promise<void>;
}

export interface SupernodeDeps {
  log?: Logger;
  /** Host to bind both ports to (default all interfaces). */
  host?: string;
  now?: () => number;
  rand?: () => number;
  /** Free bytes of homeDir's filesystem; injected by GC tests. */
  freeBytes?: FreeBytes;
  /** How long the download port waits on a peer that takes no bytes (tests shorten it). */
  uploadIdleMs?: number;
  /** How long the API port gives a client to send a whole request (tests shorten it). */
  requestTimeoutMs?: number;
  /** How long a registration waits for the origin's answer once its fetch runs (tests shorten it). */
  readyTimeoutMs?: number;
  /** An origin body idle this long is cut and resumed (default SOURCE_IDLE_MS; tests shorten it). */
  sourceIdleMs?: number;
  /** Asks the origin about registrants of guarded tasks (tests count the HEADs or fake them). */
  probe?: typeof probeSource;
  /** How long a registrant of a guarded task waits for the origin's answer (tests shorten it). */
  probeTimeoutMs?: number;
  /** Re-reads CDN pieces peers report as bad; the CDN's own when it has one (tests inject one). */
  pieceChecker?: PieceChecker;
}

/** Wires config to the CDN, scheduler service and both servers, and starts listening. */
export async function startSupernode(cfg: SupernodeConfig, deps: SupernodeDeps = {}): Promise<Supernode> {
  const log = deps.log ?? createLogger('supernode', { debug: cfg.debug });
  const now = deps.now ?? Date.now;
  const metrics = createSupernodeMetrics();
  const budget = cfg.maxBandwidth - cfg.systemReservedBandwidth;
  // One budget for what the CDN reads from origins and one for what it serves to peers: they
  // use the two directions of the link, and each must stay within maxBandwidth - reserved.
  const bucket = new TokenBucket(budget);
  const serveBucket = new TokenBucket(budget);
  await mkdir(cfg.homeDir, { recursive: true });
  const store = new LevelMetaStore(cfg.homeDir);
  const cdn = new Cdn({ homeDir: cfg.homeDir, bucket, failAccessIntervalMs: cfg.failAccessInterval, now, log, store, maxFetches: cfg.maxSourceFetches,
    onSourceBytes: (b) => {
      metrics.sourceBytes.inc(b);
      ioGc.account(b);
    },
    onFillEnd: (result) => metrics.cdnFills.inc({ result }),
    onRetry: () => metrics.sourceRetries.inc(),
    // A fill that does not fit first asks disk GC to delete what nobody uses.
    makeRoom: async () => (gcRef ? (await gcRef.runDisk()).freedBytes : 0),
    sourceIdleMs: deps.sourceIdleMs,
  });
  const host = deps.host ?? (cfg.listenIP || '0.0.0.0');
  const restored = await cdn.restore();
  if (restored > 0) log.info({ tasks: restored }, 'restored cdn tasks from homeDir');

  const tokens = new DownloadTokens();
  const download = createDownloadServer({
    cdn,
    log,
    tokens,
    bucket: serveBucket,
    idleMs: deps.uploadIdleMs,
    onServed: (b) => {
      metrics.servedBytes.inc(b);
      ioGc.account(b);
    },
    onLost: (task) => {
      const { taskId } = task;
      // A request that began before a re-registration must not drop the task that replaced it.
      if (cdn.get(taskId) !== task) return;
      log.warn({ taskId }, 'task file missing from disk: task dropped, the next registration fetches it again');
      svc.drop(taskId);
      cdn.delete(taskId).catch((err: Error) => log.warn({ taskId, err: err.message }, 'cannot delete lost task'));
    },
  });
  await new Promise<void>((res, rej) => {
    download.once('error', rej);
    download.listen(cfg.downloadPort, host, LISTEN_BACKLOG, () => res());
  });
  const downloadPort = (download.address() as AddressInfo).port;

  // Set below; a registration past maxTasks asks it to take an idle task out of memory.
  let gcRef: GcRunner | undefined;
  const svc = new TaskService({
    cdn,
    limits: {
      peerDownLimit: cfg.peerDownLimit,
      peerUpLimit: cfg.peerUpLimit,
      eliminationLimit: cfg.eliminationLimit,
      failureCountLimit: cfg.failureCountLimit,
      cdnTaskLoadLimit: cfg.peerDownLimit,
      pieceTimeoutMs: 30_000,
      relayDepth: cfg.cutThroughDepth,
    },
    advertiseIP: cfg.advertiseIP,
    maxTasks: cfg.maxTasks,
    readyTimeoutMs: deps.readyTimeoutMs,
    makeRoom: () => gcRef?.evictIdle() ?? false,
    downloadPort,
    tokens,
    probe: deps.probe,
    probeTimeoutMs: deps.probeTimeoutMs,
    now,
    rand: deps.rand,
    log,
    checker: deps.pieceChecker ?? cdn,
    onAssign: (_id, fromCdn) => metrics.piecesScheduled.inc({ source: fromCdn ? 'cdn' : 'peer' }),
    // Counted once the report names a piece of a registered peer: a rejected request is no failure.
    onPieceFailure: (_id, fromCdn) => metrics.pieceFailures.inc({ source: fromCdn ? 'cdn' : 'peer' }),
    onReport: (_id, eff) => {
      if (eff.blacklisted) metrics.blacklistEvents.inc();
      if (eff.eliminated) metrics.eliminations.inc();
    },
  });
  const api = buildApi({ svc, metrics, log, requestTimeoutMs: deps.requestTimeoutMs, plugins: [(app) => v1Routes(app, svc, cdn, now), (app) => preheatRoutes(app, { cfg: cfg.preheat, cdn, log, now, registry: metrics.registry })] });
  // A site's dfdaemons register in bursts (a rollout starts hundreds of pulls at once). Past
  // Node's default backlog of 511, SYNs are dropped and retried at 1, 3, 7 s..., which a
  // dfdaemon takes for a dead supernode; the kernel caps this at net.core.somaxconn.
  await api.listen({ port: cfg.listenPort, host, backlog: LISTEN_BACKLOG });
  const apiPort = (api.server.address() as AddressInfo).port;
  log.info({ apiPort, downloadPort, homeDir: cfg.homeDir }, 'supernode listening');
  const gc = new GcRunner(cfg, svc, cdn, metrics, log, now, deps.freeBytes);
  gcRef = gc;
  gc.start();

  const gauges = setInterval(() => {
    metrics.tasks.set(svc.tasks.size);
    let peers = 0;
    for (const e of svc.tasks.values()) peers += e.sched.peers.size;
    metrics.peers.set(peers);
    const cached = cdn.cached();
    metrics.cachedTasks.set(cached.tasks);
    metrics.cachedBytes.set(cached.bytes);
  }, 1000);
  gauges.unref();

  return {
    gc,
    api,
    download,
    svc,
    cdn,
    metrics,
    apiPort,
    downloadPort,
    downloadPath: (taskId) => tokens.path(taskId),
    async close() {
      clearInterval(gauges);
      gc.stop();
      download.closeAllConnections();
      await Promise.all([api.close(), new Promise<void>((r) => download.close(() => r()))]);
      await cdn.close();
    },
  };
}
