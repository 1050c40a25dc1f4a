import { PeerStatus, PieceResult } from '../../shared/protocol/codes.js';
import type { Logger } from '../../shared/log/index.js';
import type { TokenBucket } from '../../shared/ratelimit/token-bucket.js';
import { LocalStorageError } from '../store/disk-error.js';
import type { TaskFile } from '../store/task-file.js';
import { fetchPiece, PieceFetchError } from './fetch-piece.js';
import type { PieceClient } from './piece-client.js';
import { SlowSourceWatch, type SlowSourceOptions } from './slow-source.js';
import { stockQuery, WaitBackoff, type PieceReport } from './stock-poll.js';
import type { SupernodeClient } from './supernode-client.js';
import { TaskUnknown, type TaskAnswer, type TaskQuery, type WirePiece } from './supernode-wire.js';

export interface P2PCounters {
  pieceBytes(fromCdn: boolean, n: number): void;
  pieceFailed(fromCdn: boolean): void;
  pieceBusy(): void;
  /** A fetch cut off as slow (it is also reported, and counted, as a failed piece). */
  pieceSlow?(): void;
}

export interface P2PContext {
  client: SupernodeClient;
  node: string;
  taskId: string;
  cid: string;
  tf: TaskFile;
  pieces: PieceClient;
  bucket?: TokenBucket;
  counters?: P2PCounters;
  log: Logger;
  signal?: AbortSignal;
  /** Give up when no piece completes for this long (then the caller goes back to source). */
  stallMs?: number;
  /** When a running fetch counts as slow and is cut off (slow-source.ts); tests shorten these. */
  slowSource?: Partial<SlowSourceOptions>;
  /**
   * The supernode said it takes busy reports (result 502 with a piece): ours. Without it, a 503
   * is a failure and the stock protocol is spoken.
   */
  busyReports?: boolean;
}

/** The supernode stopped answering (or answered nonsense): another one may take over. */
export class SupernodeLost extends Error {
  constructor(readonly node: string, cause: Error) {
    super(`supernode ${node}: ${cause.message}`);
  }
}

/** The default stallMs: no piece completed for this long sends the download to the origin. */
export const STALL_MS = 30_000;

/** How long our supernode may hold a "wait" open before answering 602. */
const LONG_POLL_MS = 5_000;
/** How soon to ask again when told "limited" with no piece running here. */
const LIMITED_RETRY_MS = 1_000;
/** A stock supernode with pieces running here: ask again this often, as dfget does (its 2 s queue poll). */
const STOCK_IDLE_POLL_MS = 2_000;

/**
 * Drive one task to completion: ask the supernode for pieces, fetch them concurrently, report
 * each result with the next request. With our supernode (it says so at registration with
 * busyReports) a completion triggers the next request at once, and when nothing is running the
 * request long-polls, so there is no fixed back-off in the loop. A stock supernode gets the stock
 * protocol instead (stock-poll.ts): /peer/piece/suc for each piece, piece results on every
 * request after the first pieces, and dfget's back-off while it answers 602.
 */
export function p2pDownload(ctx: P2PContext): Promise<void> {
  const { client, node, taskId, cid, tf, log } = ctx;
  const stock = !ctx.busyReports;
  const inner = new AbortController();
  const onOuterAbort = () => inner.abort(ctx.signal?.reason);
  ctx.signal?.addEventListener('abort', onOuterAbort, { once: true });

  return new Promise<void>((resolve, reject) => {
    let running = 0;
    let outstanding = 0;
    let settled = false;
    let started = false;
    let limited = false;
    let lastProgress = Date.now();
    const backoff = new WaitBackoff();
    let lastOk: WirePiece | undefined;
    let poll: NodeJS.Timeout | undefined;
    let watchdog: NodeJS.Timeout | undefined;
    // A slow source's fetch fails like any other, so the supernode blacklists it for this peer
    // and hands the piece elsewhere, long before the watchdog gives the blob to the origin.
    const watch = new SlowSourceWatch(ctx.slowSource, (m, why) => {
      ctx.counters?.pieceSlow?.();
      log.warn({ src: m.src, got: m.bytes, of: m.length, why }, 'cutting off a slow piece source');
    });

    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearInterval(watchdog);
      clearTimeout(poll);
      watch.close();
      ctx.signal?.removeEventListener('abort', onOuterAbort);
      tf.off('complete', onComplete);
      inner.abort();
      if (err) reject(err);
      else resolve();
    };
    const onComplete = () => finish();
    tf.on('complete', onComplete);
    if (ctx.signal?.aborted) return finish(ctx.signal.reason as Error);
    if (tf.complete) return finish();

    watchdog = setInterval(() => {
      if (Date.now() - lastProgress > (ctx.stallMs ?? STALL_MS)) finish(new Error(`p2p download of ${taskId} stalled`));
    }, 1_000);

    const ownQuery = (report?: PieceReport): TaskQuery => {
      const q: TaskQuery = { taskId, srcCid: cid, status: started ? PeerStatus.Running : PeerStatus.Start, wait: LONG_POLL_MS };
      started = true;
      if (report) {
        q.range = report.piece.range;
        q.result = report.ok ? PieceResult.Success : report.busy ? PieceResult.Invalid : PieceResult.Fail;
        q.dstCid = report.piece.cid;
      }
      return q;
    };

    const ask = (report?: PieceReport) => {
      if (settled) return;
      clearTimeout(poll);
      poll = undefined;
      outstanding++;
      const q = stock ? stockQuery(taskId, cid, report, lastOk) : ownQuery(report);
      const t0 = Date.now();
      // A report must reach the supernode even if this download completes meanwhile: a lost
      // one leaves the piece unknown as held here and its source slot taken until the timeout.
      client.next(node, q, report ? undefined : inner.signal).then(
        (a) => {
          outstanding--;
          handle(a, Date.now() - t0);
        },
        (err: Error) => {
          outstanding--;
          // A node that answers 404 is up: the caller registers again there instead of leaving it.
          finish(ctx.signal?.aborted ? (ctx.signal.reason as Error) : err instanceof TaskUnknown ? err : new SupernodeLost(node, err));
        },
      );
    };

    /** A verified piece: tell the supernode, also when it completed the file and settled the download. */
    const succeeded = (p: WirePiece) => {
      if (!stock) {
        if (!settled) return ask({ piece: p, ok: true });
        // The supernode must still learn that we hold it: until then it counts the piece as in
        // flight from its source and, as the CDN seeds each piece once, other peers would wait.
        const q: TaskQuery = { taskId, srcCid: cid, status: PeerStatus.Finished, range: p.range, result: PieceResult.Success, dstCid: p.cid };
        client.next(node, q).catch((err: Error) => log.debug({ taskId, err: err.message }, 'final piece report failed'));
        return;
      }
      // A stock supernode frees the CDN's per-task slot only on /peer/piece/suc; if that never
      // gets through, the piece result itself says success so the piece is still recorded. It
      // ignores the range of a 702, so the last piece is reported like any other.
      void client.pieceSuc(node, { taskId, cid, dstCid: p.cid, pieceRange: p.range }).then((recorded) => {
        lastOk = p;
        const report = { piece: p, ok: true, recorded };
        if (!settled) return ask(report);
        client.next(node, stockQuery(taskId, cid, report, lastOk)).catch((err: Error) => log.debug({ taskId, err: err.message }, 'final piece report failed'));
      });
    };

    const start = (p: WirePiece) => {
      running++;
      const fromCdn = p.cid.startsWith('cdnnode:');
      // A piece held from before a supernode failover: the new supernode only needs the report.
      const job = tf.has(p.pieceNum)
        ? Promise.resolve()
        : fetchPiece(p, tf, {
            client: ctx.pieces,
            signal: inner.signal,
            bucket: ctx.bucket,
            onBytes: (n) => ctx.counters?.pieceBytes(fromCdn, n),
            watch,
          });
      job.then(
        () => {
          running--;
          limited = false;
          lastProgress = Date.now();
          succeeded(p);
        },
        (err: Error) => {
          running--;
          limited = false;
          if (settled) return;
          if (err instanceof LocalStorageError) {
            // Our disk refused the piece: the source is not to blame, and every further piece
            // would fail the same way. End the session now and leave the task at the supernode
            // (stock and ours), which takes back this peer's running pieces without counting them
            // against their sources.
            log.warn({ taskId, pieceNum: p.pieceNum, src: p.cid, err: err.message }, 'cannot write the piece cache, leaving the swarm');
            client.notify(node, '/peer/service/down', { taskId, cid }).catch((e: Error) => log.debug({ taskId, err: e.message }, 'service down failed'));
            return finish(err);
          }
          // Only a supernode that said so at registration takes a busy source for what it is (a
          // stock one, or an older one of ours, would drop the report and keep the run); to the
          // rest, a 503 stays a failure.
          if (err instanceof PieceFetchError && err.busy && ctx.busyReports) {
            ctx.counters?.pieceBusy();
            log.info({ pieceNum: p.pieceNum, src: p.cid }, 'piece source busy');
            return ask({ piece: p, ok: false, busy: true });
          }
          ctx.counters?.pieceFailed(fromCdn);
          log.warn({ taskId, pieceNum: p.pieceNum, src: p.cid, err: err.message, type: (err as PieceFetchError).errorType }, 'piece failed');
          ask({ piece: p, ok: false });
        },
      );
    };

    /**
     * Pieces handed to this session after it ended (an answer to a report it sent on the way
     * out): our supernode counts them as running here, filling the download slots of whatever
     * registration this cid has next, so each goes back at once as a busy report, with status
     * 702 so that nothing new is handed out in exchange.
     */
    const giveBack = (a: TaskAnswer) => {
      if (stock || a.code !== 601 || !Array.isArray(a.data)) return;
      for (const p of a.data) {
        const q: TaskQuery = { taskId, srcCid: cid, status: PeerStatus.Finished, range: p.range, result: PieceResult.Invalid, dstCid: p.cid };
        client.next(node, q).catch((err: Error) => log.debug({ taskId, err: err.message }, 'giving back a piece failed'));
      }
    };

    const handle = (a: TaskAnswer, elapsedMs: number) => {
      if (settled) return giveBack(a);
      const pieces = a.code === 601 && Array.isArray(a.data) ? a.data : undefined;
      if (pieces) {
        if (pieces.length > 0) backoff.reset();
        for (const p of pieces) start(p);
      } else if (a.code === 601 || (stock && a.code === 603)) {
        limited = true;
      } else if (a.code === 600) {
        if (tf.complete) return finish();
        return finish(new Error(`supernode says ${taskId} is finished but ${tf.layout.count - tf.completedPieces} pieces are missing`));
      } else if (a.code === 500 && a.error === 'PEER_NOT_REGISTERED') {
        // The task is known again (another peer registered it after a restart or a drop) but
        // this peer is not.
        return finish(new TaskUnknown(node, `supernode ${node}: ${a.msg}`));
      } else if (stock && (a.code === 502 || a.code === 500)) {
        // Stock for "this peer or task is unknown here" (502) and "the CDN failed or lost the
        // task" (500); dfget registers again ("migrate"), which also restarts a failed CDN.
        return finish(new TaskUnknown(node, `supernode ${node} answered ${a.code}: ${a.msg ?? ''}`));
      } else if (a.code !== 602) {
        return finish(new Error(`supernode answered ${a.code}: ${a.msg ?? ''}`));
      }
      if (outstanding > 0) return;
      if (stock) {
        // Completions ask at once; this only covers the time until one does, or a swarm with
        // nothing to hand out yet.
        const waiting = !pieces || pieces.length === 0;
        poll = setTimeout(() => ask(), waiting ? backoff.next() : STOCK_IDLE_POLL_MS);
        poll.unref();
        return;
      }
      // Keep one request parked at the supernode whenever a slot is free, also while pieces are
      // running: a piece that becomes available elsewhere then starts at once instead of after
      // this peer's next completion. A supernode that does not long-poll answers at once, so
      // pace those with a short sleep.
      // Not when every missing piece is already running here: the supernode has nothing more to
      // hand out, each completion or failure asks anyway, and the poll would still be parked
      // when the download ends, whose abort destroys its keep-alive socket (one new connection
      // to the supernode per blob).
      if (running >= tf.layout.count - tf.completedPieces) return;
      if (!limited) {
        const nothing = a.code === 602 || (pieces !== undefined && pieces.length === 0);
        if (nothing && elapsedMs < 20) setTimeout(() => ask(), 100).unref();
        else ask();
      } else if (running === 0) {
        // "Limited" with nothing running here: the supernode counts pieces this session never
        // got (an answer lost on the way). They expire there; no completion will ask again.
        poll = setTimeout(() => ask(), LIMITED_RETRY_MS);
        poll.unref();
      }
    };

    ask();
  });
}
