import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../shared/log/index.js';
import { Layout } from '../../shared/protocol/pieces.js';
import { filterUrl, taskId as computeTaskId } from '../../shared/protocol/taskid.js';
import { TokenBucket } from '../../shared/ratelimit/token-bucket.js';
import { LocalStorageError } from '../store/disk-error.js';
import type { TaskFile } from '../store/task-file.js';
import { DiskRoom } from './disk-room.js';
import { ShuttingDown, type BlobVia, type DownloaderOptions, type DownloadRequest, type Started } from './download-types.js';
import { p2pDownload, SupernodeLost } from './p2p-download.js';
import { PieceClient } from './piece-client.js';
import { fitsTask, registerBody } from './register-body.js';
import { SourceDownloads } from './source-download.js';
import { RegisterRefused, TaskUnknown, type RegisterBody, type Registered } from './supernode-wire.js';

// Names that moved out of this module (types, origin paths, piece-cache room); importers keep finding them here.
export { DISK_FULL_MS } from './disk-room.js';
export { ShuttingDown, type BlobVia, type DownloaderOptions, type DownloadRequest, type Started } from './download-types.js';
export { OriginRefused } from './source-download.js';

/**
 * Times one download registers again with a supernode that forgot its task. A node that keeps
 * forgetting it (dropping the task each time) then ends in the usual fallback to the origin.
 */
const MAX_REJOINS = 2;

/**
 * How long, and how often, a download whose supernodes were all lost tries to register again.
 * Long enough for a supernode that Docker restarts (`restart: on-failure`: about 5 s measured
 * from kill to serving), since giving up sends every running pull to the registry at once;
 * new pulls meanwhile go straight to the origin (SupernodeClient.allFailing).
 */
const FAILOVER_WINDOW_MS = 10_000;
const FAILOVER_RETRY_MS = 500;

/** How long close() waits for registrations already sent, so the service-down after covers them. */
const REGISTER_SETTLE_MS = 2_000;

/**
 * Turns one blob request into a task file that fills in, by P2P when a supernode answers and
 * from the origin otherwise. Concurrent requests for one task share one download.
 */
export class Downloader {
  private readonly inflight = new Map<string, Promise<Started>>();
  private readonly pieces = new PieceClient();
  private readonly stop = new AbortController();
  /** Nodes each running download registered with; entries go when the download ends. */
  private readonly joined = new Map<string, Set<string>>();
  private readonly registering = new Set<Promise<unknown>>();
  private readonly disk: DiskRoom;
  private readonly source: SourceDownloads;

  constructor(private readonly o: DownloaderOptions) {
    this.disk = new DiskRoom(o, this.stop.signal);
    this.source = new SourceDownloads(o, this.disk, this.stop.signal);
  }

  /** Why new downloads are refused right now (the piece cache is unwritable), if they are. */
  get storageFailure(): LocalStorageError | undefined {
    return this.disk.storageFailure;
  }

  setUploadPort(port: number): void {
    this.o.uploadPort = port;
  }

  localTaskId(req: DownloadRequest): string {
    return computeTaskId(filterUrl(req.url, this.o.filter), { range: req.headers['Range'], md5: req.md5, identifier: req.identifier });
  }

  start(req: DownloadRequest): Promise<Started> {
    const id = this.localTaskId(req);
    const local = this.o.store.get(id);
    if (local && !local.failure && (local.complete || this.inflight.has(id))) {
      const done = local.complete ? Promise.resolve() : this.inflight.get(id)!.then((s) => s.done);
      // The proxy streams from the task file and never awaits `done`; unhandled, a failed
      // download would reject it and end the process.
      done.catch(() => undefined);
      return Promise.resolve({ tf: local, via: 'local', done });
    }
    // The cache cannot take the blob: refuse before the caller commits to an answer, so the
    // proxy passes the request through (a download would only break off part-way).
    const full = this.storageFailure;
    if (full) return Promise.reject(full);
    const pending = this.inflight.get(id);
    if (pending) return pending.then((s) => ({ ...s, via: 'local' as const }));
    const p = this.begin(req, id);
    this.inflight.set(id, p);
    p.then(
      (s) => s.done.finally(() => this.inflight.delete(id)).catch(() => undefined),
      () => this.inflight.delete(id),
    );
    return p;
  }

  private async begin(req: DownloadRequest, id: string): Promise<Started> {
    const log = this.o.log.child({ taskId: id });
    const bucket = new TokenBucket(this.o.rate ?? 0);
    if (this.o.client.hasNodes && this.o.client.allFailing()) {
      log.info('every supernode failed lately, going to the origin');
    } else if (this.o.client.hasNodes) {
      let joined: string | undefined;
      try {
        const reg = await this.join(id, req);
        joined = reg.taskId;
        if (reg.cdnSource === 'source') {
          // Stock `cdnPattern: source`: the supernode caches nothing and would send us to ranges
          // of the origin without piece digests, so fetch the origin ourselves. This is where the
          // supernode sends us, not a back-source, so --notbs does not forbid it.
          this.left(reg.taskId);
          log.info({ node: reg.node }, 'supernode serves this task from its source, fetching the origin directly');
          return this.source.fromSource(req, id, bucket, true);
        }
        if (reg.fileLength >= 0) {
          const tf = await this.disk.open(reg.taskId, new Layout(reg.fileLength, reg.pieceSize));
          const rejoins = { left: MAX_REJOINS };
          // Counted by how the blob was completed, so a fallback does not pass for P2P.
          let via: BlobVia = 'p2p';
          const done = this.swarm(req, reg, tf, bucket, log, rejoins).catch(async (err: Error) => {
            if (this.stop.signal.aborted) throw new ShuttingDown();
            // Our disk is full or failing: neither another supernode nor the origin can help,
            // and the origin's bytes would land on the same disk.
            if (err instanceof LocalStorageError) throw err;
            // Only a lost supernode moves down the order: a swarm stalled by bad peers says
            // nothing about it, and demoting it would split the next tasks' swarms.
            if (err instanceof SupernodeLost) {
              this.o.client.markFailed(reg.node);
              if (await this.failover(req, tf, reg.node, bucket, log, rejoins)) return;
            }
            if (this.stop.signal.aborted) throw new ShuttingDown();
            log.warn({ err: err.message }, 'p2p failed, completing from the origin');
            via = 'p2p+source';
            await this.source.completeFromSource(req, tf, bucket);
          });
          done.then(() => this.left(reg.taskId), () => this.left(reg.taskId));
          done.catch((err: Error) => this.disk.failed(tf, err));
          return {
            tf,
            get via() {
              return via;
            },
            done,
          };
        }
        this.left(reg.taskId);
      } catch (err) {
        if (joined !== undefined) this.left(joined);
        if (err instanceof RegisterRefused || err instanceof ShuttingDown || err instanceof LocalStorageError) throw err;
        log.warn({ err: (err as Error).message }, 'no supernode answered, going to the origin');
      }
    }
    return this.source.fromSource(req, id, bucket);
  }

  /**
   * Fetch the task's missing pieces through the swarm of `node`, where it is registered. A node
   * that answers but forgot the task (restart, GC, DELETE) is not lost: register there again,
   * keeping every verified piece, while `rejoins` lasts.
   */
  private async swarm(req: DownloadRequest, reg: Registered, tf: TaskFile, bucket: TokenBucket, log: Logger, rejoins: { left: number }): Promise<void> {
    for (;;) {
      tf.node = reg.node;
      const { node, busyReports } = reg;
      try {
        return await p2pDownload({
          client: this.o.client,
          node,
          busyReports,
          taskId: tf.taskId,
          cid: this.o.cid,
          tf,
          pieces: this.pieces,
          bucket,
          counters: this.o.counters,
          log,
          signal: this.stop.signal,
          slowSource: this.o.slowSource,
        });
      } catch (err) {
        if (!(err instanceof TaskUnknown) || rejoins.left <= 0) throw err;
        rejoins.left--;
        reg = await this.rejoin(req, tf, node, log);
      }
    }
  }

  /** Register the task again with the node that forgot it, and only with that one. */
  private async rejoin(req: DownloadRequest, tf: TaskFile, node: string, log: Logger): Promise<Registered> {
    let reg: Registered;
    try {
      reg = await this.join(tf.taskId, req, node);
    } catch (err) {
      // Unreachable now: lost after all, so the caller fails over as for any lost node.
      if (err instanceof RegisterRefused || err instanceof ShuttingDown) throw err;
      throw new SupernodeLost(node, err as Error);
    }
    // Another blob behind the same URL: the pieces held belong to the old one.
    if (!fitsTask(reg, tf)) {
      throw new Error(`supernode ${node} registered ${tf.taskId} again with another layout`);
    }
    log.warn({ node, held: tf.completedPieces }, 'supernode forgot the task, registered again');
    return reg;
  }

  private async registration(req: DownloadRequest, node: string): Promise<RegisterBody> {
    return registerBody(req, this.o, await this.o.client.addressFor(node), this.localTaskId(req));
  }

  /**
   * The supernode went away mid-download: register with the next one and carry on there,
   * keeping every verified piece (they are reported, not fetched again). A supernode that is
   * restarting (compose's `restart: always`, an upgrade) is down for moments, so registration is
   * retried for a little while; if the lost node itself takes the task again, it is back and the
   * download carries on there, while `rejoins` lasts. False when no supernode takes the task, or
   * its swarm fails too; the caller then completes the file from the origin.
   */
  private async failover(req: DownloadRequest, tf: TaskFile, lost: string, bucket: TokenBucket, log: Logger, rejoins: { left: number }): Promise<boolean> {
    try {
      const reg = await this.registerRetrying(req, tf.taskId);
      if (!fitsTask(reg, tf) || this.stop.signal.aborted) return false;
      if (reg.node === lost) {
        if (rejoins.left <= 0) return false;
        rejoins.left--;
      }
      log.warn({ from: lost, to: reg.node, held: tf.completedPieces }, reg.node === lost ? 'supernode back, continuing with it' : 'supernode lost, continuing with the next');
      await this.swarm(req, reg, tf, bucket, log, rejoins);
      return true;
    } catch (err) {
      if (!this.stop.signal.aborted) log.warn({ err: (err as Error).message }, 'no other supernode finished the download');
      return false;
    }
  }

  private async registerRetrying(req: DownloadRequest, taskId: string): Promise<Registered> {
    for (let waited = 0; ; waited += FAILOVER_RETRY_MS) {
      try {
        return await this.join(taskId, req);
      } catch (err) {
        if (err instanceof RegisterRefused || err instanceof ShuttingDown || waited >= FAILOVER_WINDOW_MS) throw err;
        await sleep(FAILOVER_RETRY_MS, undefined, { ref: false, signal: this.stop.signal }).catch(() => undefined);
      }
    }
  }

  /**
   * Register a task (with `only`, at that node alone), remembering where, so the service-down
   * sent at shutdown reaches every node that may hand out this peer. None starts once closing.
   */
  private async join(taskId: string, req: DownloadRequest, only?: string): Promise<Registered> {
    const p = this.o.client.register(taskId, (node) => this.registration(req, node), only, this.stop.signal);
    this.registering.add(p);
    try {
      const reg = await p;
      // Under the supernode's ID for the task: that is what a service-down must name.
      const nodes = this.joined.get(reg.taskId) ?? new Set<string>();
      nodes.add(reg.node);
      this.joined.set(reg.taskId, nodes);
      return reg;
    } catch (err) {
      if (this.stop.signal.aborted) throw new ShuttingDown();
      throw err;
    } finally {
      this.registering.delete(p);
    }
  }

  /** The download of `taskId` ended: its task file's node (if any) is what the supernode knows. */
  private left(taskId: string): void {
    if (!this.stop.signal.aborted) this.joined.delete(taskId);
  }

  /** Every node a download registered with, for the service-down at shutdown. */
  registrations(): { taskId: string; node: string }[] {
    return [...this.joined].flatMap(([taskId, nodes]) => [...nodes].map((node) => ({ taskId, node })));
  }

  /**
   * Stop every download and refuse new work. Registrations already on the wire are given a
   * moment to finish, so the caller's service-down (sent after this) covers them too.
   */
  async close(): Promise<void> {
    this.stop.abort(new ShuttingDown());
    if (this.registering.size > 0) {
      const settle = sleep(REGISTER_SETTLE_MS, undefined, { ref: false });
      await Promise.race([Promise.allSettled([...this.registering]), settle]);
    }
    this.pieces.close();
  }
}
