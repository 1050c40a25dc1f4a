import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import type { AddressInfo } from 'node:net';
import { expandNodes } from '../shared/config/dfget-flags.js';
import type { DfdaemonConfig } from '../shared/config/dfdaemon.js';
import { createLogger, type Logger } from '../shared/log/index.js';
import { TokenBucket } from '../shared/ratelimit/token-bucket.js';
import { createDfdaemonMetrics, type DfdaemonMetrics } from './metrics.js';
import { Downloader } from './peer/downloader.js';
import { SupernodeClient } from './peer/supernode-client.js';
import { createProxyServer } from './proxy/server.js';
import { PieceStore } from './store/piece-store.js';
import { handleUpload, type UploaderOptions } from './uploader/uploader.js';

export interface Dfdaemon {
  port: number;
  peerPort: number;
  cid: string;
  metrics: DfdaemonMetrics;
  store: PieceStore;
  close(): Promise<void>;
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}

/** Wires one dfdaemon: store, supernode client, downloader, proxy and uploader. */
export async function startDfdaemon(cfg: DfdaemonConfig, deps: { log?: Logger; host?: string } = {}): Promise<Dfdaemon> {
  const log = deps.log ?? createLogger('dfdaemon', { debug: cfg.verbose });
  const host = deps.host ?? (cfg.listenIP || '0.0.0.0');
  const metrics = createDfdaemonMetrics();
  const store = new PieceStore(cfg.localrepo);
  const client = new SupernodeClient(() => expandNodes(cfg.nodes), log);
  const cid = `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
  const uploader: UploaderOptions = {
    store,
    log,
    bucket: new TokenBucket(cfg.dfget.totalLimit ?? cfg.ratelimit),
    onBytes: (n) => metrics.uploadBytes.inc(n),
  };

  // The uploader port must be known before the downloader registers with it.
  let peerServer: Server | undefined;
  let peerPort = 0;
  if (cfg.peerPort !== 0) {
    peerServer = createServer((req, res) => void handleUpload(req, res, uploader));
    peerPort = await listen(peerServer, cfg.peerPort, host);
  }
  const downloader = new Downloader({
    store,
    client,
    cid,
    uploadPort: 0,
    localIP: cfg.localIP || (host !== '0.0.0.0' ? host : ''),
    filter: cfg.dfget.filter,
    bucket: new TokenBucket(cfg.dfget.localLimit ?? cfg.ratelimit),
    notbs: cfg.dfget.notbs,
    counters: {
      pieceBytes: (fromCdn, n) => metrics.pieceBytes.inc({ source: fromCdn ? 'supernode' : 'peer' }, n),
      pieceFailed: (fromCdn) => metrics.pieceFailures.inc({ source: fromCdn ? 'supernode' : 'peer' }),
      sourceBytes: (n) => metrics.sourceBytes.inc(n),
    },
    log,
  });
  const proxy = createProxyServer({ cfg, downloader, store, metrics, log, uploader, servesPeers: !peerServer });
  const port = await listen(proxy, cfg.port, host);
  downloader.setUploadPort(peerServer ? peerPort : port);
  log.info({ port, peerPort: peerServer ? peerPort : port, cid }, 'dfdaemon listening');

  return {
    port,
    peerPort: peerServer ? peerPort : port,
    cid,
    metrics,
    store,
    async close() {
      proxy.closeAllConnections();
      peerServer?.closeAllConnections();
      await Promise.all([
        new Promise<void>((r) => proxy.close(() => r())),
        peerServer ? new Promise<void>((r) => peerServer!.close(() => r())) : Promise.resolve(),
      ]);
      await downloader.close();
      await client.close();
      await store.close();
    },
  };
}
