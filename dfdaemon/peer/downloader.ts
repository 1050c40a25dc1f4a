import { createWriteStream } from 'node:fs';
import { rm, statfs } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../shared/log/index.js';
import { Layout, pieceSizeFor } from '../../shared/protocol/pieces.js';
import { filterUrl, taskId as computeTaskId } from '../../shared/protocol/taskid.js';
import { contentRange } from '../../shared/http/client.js';
import { VERSION } from '../../shared/protocol/version.js';
import { TokenBucket } from '../../shared/ratelimit/token-bucket.js';
import { LocalStorageError, localStorageError } from '../store/disk-error.js';
import type { PieceStore } from '../store/piece-store.js';
import type { TaskFile } from '../store/task-file.js';
import { fillFromSource, openOrigin, type SourceAnswer } from './back-source.js';
import { p2pDownload, SupernodeLost, type P2PCounters } from './p2p-download.js';
import { PieceClient } from './piece-client.js';
import { RegisterRefused, TaskUnknown, type RegisterBody, type Registered, type SupernodeClient } from './supernode-client.js';

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

export interface Started {
  tf: TaskFile;
  via: 'p2p' | 'source' | 'local';
  /** Settles when every piece is on disk (or the download gave up). */
  done: Promise<void>;
}

/**
 * Times one download registers again with a supernode that forgot its task. A node that keeps
 * forgetting it (dropping the task each time) then ends in the usual fallback to the origin.
 */
const MAX_REJOINS = 2;

/** How long, and how often, a download whose supernode was lost tries to register again. */
const FAILOVER_WINDOW_MS = 3_000;
const FAILOVER_RETRY_MS = 500;

/** How long close() waits for registrations already sent, so the service-down after covers them. */
const REGISTER_SETTLE_MS = 2_000;

/**
 * After the piece cache refused a write (full, over quota, read-only), new downloads are refused
 * this long, so the proxy passes blob requests through before it sends any header, instead of
 * starting a download that would break off. A task already complete here is still served.
 */
export const DISK_FULL_MS = 30_000;

/** The daemon is shutting down: no registration, failover or origin fetch starts any more. */
export class ShuttingDown extends Error {
  constructor() {
    super('dfdaemon is shutting down');
  }
}

/** What the origin answered when it refused a direct fetch; the proxy relays it. */
export class OriginRefused extends Error {
  constructor(readonly status: number) {
    super(`origin answered ${status}`);
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
  filter: readonly string[];
  /** Bytes/s for each download (dfget's --locallimit); every download gets its own bucket. */
  rate?: number;
  /** Called before a new task file is opened, to make room for it in the cache. */
  reserve?: (bytes: number) => Promise<void>;
  counters?: P2PCounters & { sourceBytes(n: number): void };
  log: Logger;
  /** Refuse to go to the origin ourselves (dfget --notbs). */
  notbs?: boolean;
}

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
  /** The piece cache's last write failure, while it is fresh (DISK_FULL_MS). */
  private diskFailure: { at: number; err: LocalStorageError } | undefined;

  constructor(private readonly o: DownloaderOptions) {}

  /** Why new downloads are refused right now (the piece cache is unwritable), if they are. */
  get storageFailure(): LocalStorageError | undefined {
    const f = this.diskFailure;
    if (f && Date.now() - f.at < DISK_FULL_MS) return f.err;
    this.diskFailure = undefined;
    return undefined;
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
          return this.fromSource(req, id, bucket, true);
        }
        if (reg.fileLength >= 0) {
          const tf = await this.open(reg.taskId, new Layout(reg.fileLength, reg.pieceSize));
          const rejoins = { left: MAX_REJOINS };
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
            await this.completeFromSource(req, tf, bucket);
          });
          done.then(() => this.left(reg.taskId), () => this.left(reg.taskId));
          done.catch((err: Error) => this.failed(tf, err));
          return { tf, via: 'p2p', done };
        }
        this.left(reg.taskId);
      } catch (err) {
        if (joined !== undefined) this.left(joined);
        if (err instanceof RegisterRefused || err instanceof ShuttingDown || err instanceof LocalStorageError) throw err;
        log.warn({ err: (err as Error).message }, 'no supernode answered, going to the origin');
      }
    }
    return this.fromSource(req, id, bucket);
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
    const addr = await this.o.client.addressFor(node);
    const taskUrl = filterUrl(req.url, this.o.filter);
    return {
      rawUrl: req.url,
      taskUrl,
      cid: this.o.cid,
      ip: this.o.localIP || addr.local,
      port: this.o.uploadPort,
      path: `/peer/file/${this.localTaskId(req)}`,
      hostName: hostname(),
      version: VERSION,
      superNodeIp: addr.remote,
      headers: Object.entries(req.headers).map(([k, v]) => `${k}:${v}`),
      dfdaemon: true,
      relay: true,
      insecure: req.insecure ?? false,
      rootCAs: (req.ca ?? []).map((pem) => Buffer.from(pem).toString('base64')),
      ...(req.md5 ? { md5: req.md5 } : {}),
      ...(req.identifier ? { identifier: req.identifier } : {}),
    };
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
   * A task file for this layout; a failed one is reopened, keeping its verified pieces. Refused
   * with a LocalStorageError when the disk has no room for what the file still lacks (after the
   * cache made what room it could) or the file cannot be created.
   */
  private async open(taskId: string, layout: Layout): Promise<TaskFile> {
    const held = this.o.store.get(taskId);
    const sameLayout = held && held.layout.fileLength === layout.fileLength && held.layout.pieceSize === layout.pieceSize;
    if (!held) await this.o.reserve?.(layout.fileLength);
    const need = layout.fileLength - (sameLayout ? heldBytes(held) : 0);
    if ((await this.room(held)) < need) {
      if (held) await this.o.reserve?.(layout.fileLength);
      const room = await this.room(held);
      // Only this blob is too big for what is left: smaller ones still fit, so this is no
      // reason to pass every download through for a while.
      if (room < need) throw new LocalStorageError('ENOSPC', `the piece cache ${this.o.store.dir} has ${room} bytes free for a ${need}-byte download`);
    }
    try {
      const tf = await this.o.store.open(taskId, layout);
      tf.retry();
      return tf;
    } catch (err) {
      const local = localStorageError(err, `opening the task file of ${taskId}`);
      if (!local) throw err;
      this.noteDiskFailure(local, layout.fileLength);
      throw local;
    }
  }

  /**
   * Free bytes in the piece cache's file system, less what the downloads already running there
   * (other than `except`) still have to write: task files are written sparsely, as pieces come.
   */
  private async room(except?: TaskFile): Promise<number> {
    const fs = await statfs(this.o.store.dir).catch(() => undefined);
    if (!fs) return Infinity;
    let owed = 0;
    for (const tf of this.o.store.all()) {
      if (tf !== except && !tf.complete && !tf.failure) owed += tf.layout.fileLength - heldBytes(tf);
    }
    return fs.bavail * fs.bsize - owed;
  }

  /**
   * A download ended. When the piece cache refused its bytes, new downloads are refused for a
   * while (the proxy passes them through) and the cache is asked to make room.
   */
  private failed(tf: TaskFile, err: Error): void {
    tf.fail(err);
    if (err instanceof LocalStorageError) this.noteDiskFailure(err, tf.layout.fileLength);
  }

  private noteDiskFailure(err: LocalStorageError, bytes: number): void {
    if (this.stop.signal.aborted) return;
    const fresh = this.storageFailure === undefined;
    this.diskFailure = { at: Date.now(), err };
    if (fresh) this.o.log.warn({ err: err.message, code: err.errno, refuseMs: DISK_FULL_MS }, 'the piece cache cannot be written: passing downloads through for a while');
    // Failed task files (this one too, once nobody reads it) and expired ones go first.
    void Promise.resolve(this.o.reserve?.(bytes)).catch((e: Error) => this.o.log.warn({ err: e.message }, 'cache sweep after a disk failure failed'));
  }

  private async fromSource(req: DownloadRequest, id: string, bucket: TokenBucket, directed = false): Promise<Started> {
    if (this.o.notbs && !directed) throw new Error('no supernode answered and back-source is disabled');
    let src = await openOrigin(req.url, req.headers, { insecure: req.insecure, ca: req.ca, signal: this.stop.signal });
    // A request with its own Range (dfget --header 'Range: ...', a ranged task) gets a 206: its
    // body is the whole content of this task.
    if (src.status === 206 && rangeOf(req.headers) !== undefined) src = { ...src, status: 200, length: partLength(src) };
    if (src.status !== 200 || (src.length < 0 && req.needLength)) {
      src.body.resume();
      throw new OriginRefused(src.status);
    }
    if (src.length < 0) return this.fromSourceUnsized(src, id, bucket);
    let tf: TaskFile;
    try {
      tf = await this.open(id, new Layout(src.length, pieceSizeFor(src.length)));
    } catch (err) {
      src.body.destroy();
      throw err;
    }
    const done = fillFromSource(tf, src, 0, { bucket, signal: this.stop.signal, onBytes: (n) => this.o.counters?.sourceBytes(n) });
    done.catch((err: Error) => this.failed(tf, err));
    return { tf, via: 'source', done };
  }

  /**
   * An origin that does not say its length (chunked): the layout of a task file depends on it,
   * so the body goes whole into a file of the store first, which becomes the complete task file
   * at its end. Stock dfget's back-source copies such a body the same way.
   */
  private async fromSourceUnsized(src: SourceAnswer, id: string, bucket: TokenBucket): Promise<Started> {
    let part: string;
    try {
      part = await this.o.store.partPath(id);
    } catch (err) {
      src.body.destroy();
      throw err;
    }
    let bytes = 0;
    const count = new Transform({
      transform: (chunk: Buffer, _e, cb) => {
        bytes += chunk.length;
        this.o.counters?.sourceBytes(chunk.length);
        if (bucket.unlimited) return cb(null, chunk);
        bucket.take(chunk.length, this.stop.signal).then(() => cb(null, chunk), cb);
      },
    });
    try {
      await pipeline(src.body, count, createWriteStream(part), { signal: this.stop.signal });
      const tf = await this.o.store.adopt(id, new Layout(bytes, pieceSizeFor(bytes)), part);
      return { tf, via: 'source', done: Promise.resolve() };
    } catch (err) {
      await rm(part, { force: true });
      const local = localStorageError(err, `writing the body of ${id}`);
      if (local) this.noteDiskFailure(local, bytes);
      throw this.stop.signal.aborted ? new ShuttingDown() : (local ?? err);
    }
  }

  private async completeFromSource(req: DownloadRequest, tf: TaskFile, bucket: TokenBucket): Promise<void> {
    if (this.o.notbs) throw new Error('p2p failed and back-source is disabled');
    const from = tf.layout.piece(tf.firstMissing()).rawStart;
    const src = await openOrigin(req.url, req.headers, { from, insecure: req.insecure, ca: req.ca, signal: this.stop.signal });
    if (src.status !== 200 && src.status !== 206) {
      src.body.resume();
      throw new OriginRefused(src.status);
    }
    await fillFromSource(tf, src, from, { bucket, signal: this.stop.signal, onBytes: (n) => this.o.counters?.sourceBytes(n) });
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

/**
 * The request's own Range header. Only this spelling makes a ranged task ID (as in Dragonfly),
 * so only it may turn a 206 into the task's content.
 */
function rangeOf(headers: Record<string, string>): string | undefined {
  return headers['Range'];
}

/** The body length of a 206: its Content-Length, else what its Content-Range spans; -1 if neither. */
function partLength(src: SourceAnswer): number {
  const cl = src.headers['content-length'];
  if (typeof cl === 'string' && /^\d+$/.test(cl)) return Number(cl);
  const cr = contentRange(src.headers);
  return cr ? cr.end - cr.start + 1 : -1;
}

/** Bytes of the verified pieces a task file holds (all but the last piece are full). */
function heldBytes(tf: TaskFile): number {
  const { layout } = tf;
  if (tf.complete) return layout.fileLength;
  const last = layout.count - 1;
  return tf.completedPieces * layout.contentSize - (tf.has(last) ? layout.contentSize - layout.piece(last).contentLen : 0);
}

/** A registration that describes the task file's own blob, so the pieces it holds still count. */
function fitsTask(reg: Registered, tf: TaskFile): boolean {
  return reg.taskId === tf.taskId && reg.fileLength === tf.layout.fileLength && reg.pieceSize === tf.layout.pieceSize;
}
