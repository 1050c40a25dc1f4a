import { PeerStatus, PieceResult } from '../../shared/protocol/codes.js';
import type { Logger } from '../../shared/log/index.js';
import type { TokenBucket } from '../../shared/ratelimit/token-bucket.js';
import type { TaskFile } from '../store/task-file.js';
import { fetchPiece, PieceFetchError } from './fetch-piece.js';
import type { PieceClient } from './piece-client.js';
import { TaskUnknown, type SupernodeClient, type TaskAnswer, type TaskQuery, type WirePiece } from './supernode-client.js';

export interface P2PCounters {
  pieceBytes(fromCdn: boolean, n: number): void;
  pieceFailed(fromCdn: boolean): void;
  pieceBusy(): void;
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
  /** The supernode said it takes busy reports (result 502 with a piece); else a 503 is a failure. */
  busyReports?: boolean;
}

/** The supernode stopped answering (or answered nonsense): another one may take over. */
export class SupernodeLost extends Error {
  constructor(readonly node: string, cause: Error) {
    super(`supernode ${node}: ${cause.message}`);
  }
}

/** How long our supernode may hold a "wait" open before answering 602. */
const LONG_POLL_MS = 5_000;

/**
 * Drive one task to completion: ask the supernode for pieces, fetch them concurrently, report
 * each result with the next request. A completion triggers the next request at once, and when
 * nothing is running the request long-polls, so there is no fixed back-off in the loop.
 */
export function p2pDownload(ctx: P2PContext): Promise<void> {
  const { client, node, taskId, cid, tf, log } = ctx;
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

    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearInterval(watchdog);
      ctx.signal?.removeEventListener('abort', onOuterAbort);
      tf.off('complete', onComplete);
      inner.abort();
      if (err) reject(err);
      else resolve();
    };
    const onComplete = () => finish();
    tf.on('complete', onComplete);
    if (tf.complete) return finish();

    const watchdog = setInterval(() => {
      if (Date.now() - lastProgress > (ctx.stallMs ?? 30_000)) finish(new Error(`p2p download of ${taskId} stalled`));
    }, 1_000);

    const ask = (report?: { piece: WirePiece; ok: boolean; busy?: boolean }) => {
      if (settled) return;
      outstanding++;
      const q: TaskQuery = { taskId, srcCid: cid, status: started ? PeerStatus.Running : PeerStatus.Start };
      started = true;
      if (report) {
        q.range = report.piece.range;
        q.result = report.ok ? PieceResult.Success : report.busy ? PieceResult.Invalid : PieceResult.Fail;
        q.dstCid = report.piece.cid;
      }
      q.wait = LONG_POLL_MS;
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
          });
      job.then(
        () => {
          running--;
          limited = false;
          lastProgress = Date.now();
          if (!settled) return ask({ piece: p, ok: true });
          // This piece completed the file, which settled the download before its report went
          // out. The supernode must still learn that we hold it: until then it counts the
          // piece as in flight from its source and, as the CDN seeds each piece once, other
          // peers would wait for it.
          const q: TaskQuery = { taskId, srcCid: cid, status: PeerStatus.Finished, range: p.range, result: PieceResult.Success, dstCid: p.cid };
          client.next(node, q).catch((err: Error) => log.debug({ taskId, err: err.message }, 'final piece report failed'));
        },
        (err: Error) => {
          running--;
          limited = false;
          if (settled) return;
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

    const handle = (a: TaskAnswer, elapsedMs: number) => {
      if (settled) return;
      if (a.code === 601 && Array.isArray(a.data)) {
        for (const p of a.data) start(p);
      } else if (a.code === 601) {
        limited = true;
      } else if (a.code === 600) {
        if (tf.complete) return finish();
        return finish(new Error(`supernode says ${taskId} is finished but ${tf.layout.count - tf.completedPieces} pieces are missing`));
      } else if (a.code === 500 && a.error === 'PEER_NOT_REGISTERED') {
        // The task is known again (another peer registered it after a restart or a drop) but
        // this peer is not.
        return finish(new TaskUnknown(node, `supernode ${node}: ${a.msg}`));
      } else if (a.code !== 602) {
        return finish(new Error(`supernode answered ${a.code}: ${a.msg ?? ''}`));
      }
      // Keep one request parked at the supernode whenever a slot is free, also while pieces are
      // running: a piece that becomes available elsewhere then starts at once instead of after
      // this peer's next completion. A supernode that does not long-poll answers at once, so
      // pace those with a short sleep.
      if (outstanding === 0 && !limited) {
        const nothing = a.code === 602 || (Array.isArray(a.data) && a.data.length === 0);
        if (nothing && elapsedMs < 20) setTimeout(() => ask(), 100).unref();
        else ask();
      }
    };

    ask();
  });
}
