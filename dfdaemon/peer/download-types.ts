import type { Logger } from '../../shared/log/index.js';
import type { PieceStore } from '../store/piece-store.js';
import type { TaskFile } from '../store/task-file.js';
import type { PiecePaths } from '../uploader/piece-path.js';
import type { P2PCounters } from './p2p-download.js';
import type { SlowSourceOptions } from './slow-source.js';
import type { SupernodeClient } from './supernode-client.js';

export interface DownloadRequest {
  url: string;
  /** Request headers to forward to the origin (Authorization etc.). */
  headers: Record<string, string>;
  insecure?: boolean;
  /** Extra CA PEMs trusted for this origin. */
  ca?: string[];
  /** dfget -m / -i: part of the task ID, as in Dragonfly (md5 wins over identifier). */
  md5?: string;
  identifier?: string;
  /**
   * The caller must know the length before the download ends (the proxy sends Content-Length
   * at once): an origin that does not say it is refused (OriginRefused), where dfget would wait
   * for the whole body instead.
   */
  needLength?: boolean;
}

/**
 * How a blob was obtained: 'p2p+source' is a P2P download the origin completed (the swarm
 * stalled, or no supernode took it over), 'local' the cache or a download already running.
 */
export type BlobVia = 'p2p' | 'p2p+source' | 'source' | 'local';

export interface Started {
  tf: TaskFile;
  /**
   * How the blob is being obtained. It can change while the download runs (a P2P download that
   * falls back to the origin becomes 'p2p+source'), so read it once the blob is complete.
   */
  readonly via: BlobVia;
  /** Settles when every piece is on disk (or the download gave up). */
  done: Promise<void>;
}

/** The daemon is shutting down: no registration, failover or origin fetch starts any more. */
export class ShuttingDown extends Error {
  constructor() {
    super('dfdaemon is shutting down');
  }
}

export interface DownloaderOptions {
  store: PieceStore;
  client: SupernodeClient;
  /** Our peer id; one per process, like a long-lived dfget server. */
  cid: string;
  /** Port other peers reach our uploader on (set once listening). */
  uploadPort: number;
  /** Advertised address; '' = as the supernode sees us. */
  localIP: string;
  /** The path names our uploader serves pieces under (the process's own when not given). */
  paths?: PiecePaths;
  filter: readonly string[];
  /** Bytes/s for each download (dfget's --locallimit); every download gets its own bucket. */
  rate?: number;
  /** Called before a new task file is opened, to make room for it in the cache. */
  reserve?: (bytes: number) => Promise<void>;
  counters?: P2PCounters & { sourceBytes(n: number): void };
  log: Logger;
  /** Refuse to go to the origin ourselves (dfget --notbs). */
  notbs?: boolean;
  /** Fail an origin body that sends nothing for this long (default BODY_IDLE_MS; tests shorten it). */
  sourceIdleMs?: number;
  /** When a running piece fetch counts as slow and is cut off (slow-source.ts); tests shorten these. */
  slowSource?: Partial<SlowSourceOptions>;
}
