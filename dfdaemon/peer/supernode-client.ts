import { Agent } from 'node:http';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SupernodeAddress } from '../../shared/config/dfget-flags.js';
import type { Logger } from '../../shared/log/index.js';
import { discard, drain, readJson, send, type Answer } from '../../shared/http/client.js';
import { Code } from '../../shared/protocol/codes.js';
import { outOfFdsError } from '../store/disk-error.js';
import { nodeOrder } from './node-order.js';
import { RegisterRefused, TaskUnknown, type RegisterBody, type Registered, type RegistryAnswer, type TaskAnswer, type TaskQuery } from './supernode-wire.js';

export interface SupernodeClientOptions {
  /** A node that failed is tried last for this long, then first again where it ranks first. */
  retryFailedMs?: number;
  /**
   * A supernode answer (head and JSON body) must be complete within this long; one that sends a
   * head and stalls counts as failed, so registration moves on to the next node (default 90 s:
   * above the supernode's 30 s wait for an origin and its long-poll).
   */
  replyTimeoutMs?: number;
  /** Pause before asking a node that answered 609 (wait auth) again (Dragonfly: 2.5 s). */
  waitAuthMs?: number;
  /**
   * A registration without an answer this long makes the client check that the node is alive
   * (GET /_ping, PING_MS), and again every this long while it waits. A node that does not answer
   * the ping (paused, stopped, its event loop blocked) fails the registration, so a hung node
   * costs about this plus PING_MS, close to stock dfget's 5 s API timeout. One that answers is
   * waiting on a slow origin (ours holds the registration until the origin's headers come) and
   * is waited for (default 5 s).
   */
  livenessMs?: number;
  now?: () => number;
}

/**
 * Talks to the supernodes of `--node`. Each task ranks the nodes by weighted rendezvous
 * hashing (node-order.ts), so every peer of a blob registers with the same supernode and the
 * blob has one swarm; a node that fails is tried last for a while, then first again, so a
 * restarted node takes its share back.
 */
export class SupernodeClient {
  private readonly agent = new Agent({ keepAlive: true, timeout: 60_000 });
  /** Liveness checks go on fresh connections, none kept open. */
  private readonly pingAgent = new Agent({ keepAlive: false });
  private readonly failedAt = new Map<string, number>();
  private readonly localIPs = new Map<string, { local: string; remote: string }>();
  private readonly retryFailedMs: number;
  private readonly replyTimeoutMs: number;
  private readonly waitAuthMs: number;
  private readonly livenessMs: number;
  private readonly now: () => number;

  constructor(
    private readonly nodes: readonly SupernodeAddress[],
    private readonly log: Logger,
    opts: SupernodeClientOptions = {},
  ) {
    this.retryFailedMs = opts.retryFailedMs ?? 30_000;
    this.replyTimeoutMs = opts.replyTimeoutMs ?? 90_000;
    this.waitAuthMs = opts.waitAuthMs ?? 2_500;
    this.livenessMs = opts.livenessMs ?? 5_000;
    this.now = opts.now ?? Date.now;
  }

  get hasNodes(): boolean {
    return this.nodes.length > 0;
  }

  /**
   * Every node failed within its retry window: asking them would most likely only delay the
   * download (a hung node costs a liveness check each time), so new downloads go to the origin.
   */
  allFailing(): boolean {
    const now = this.now();
    return this.nodes.length > 0 && this.nodes.every((n) => this.failedLately(n.addr, now));
  }

  /** Try order for one task: its ranking, with nodes that failed lately moved to the end. */
  order(taskKey: string): string[] {
    const now = this.now();
    const ranked = nodeOrder(this.nodes, taskKey);
    const healthy = ranked.filter((n) => !this.failedLately(n, now));
    return [...healthy, ...ranked.filter((n) => !healthy.includes(n))];
  }

  /** Whether `node` failed within its retry window. */
  private failedLately(node: string, now: number): boolean {
    return now - (this.failedAt.get(node) ?? -Infinity) < this.retryFailedMs;
  }

  /** Our address as the node sees it, found by dialing it (as dfget does). */
  async addressFor(node: string): Promise<{ local: string; remote: string }> {
    const cached = this.localIPs.get(node);
    if (cached) return cached;
    const [host, port] = splitHostPort(node);
    const addr = await new Promise<{ local: string; remote: string }>((resolve, reject) => {
      const s = connect({ host, port, timeout: 3_000 });
      s.once('connect', () => {
        const r = { local: s.localAddress ?? '127.0.0.1', remote: s.remoteAddress ?? host };
        s.destroy();
        resolve(r);
      });
      s.once('timeout', () => s.destroy(new Error(`connect to ${node} timed out`)));
      s.once('error', reject);
    });
    this.localIPs.set(node, addr);
    return addr;
  }

  /**
   * Register with the first node of the task's order that takes it; with `only`, that node alone.
   * Once `signal` aborts no further node is asked; a request already sent is left to finish.
   */
  async register(taskKey: string, make: (node: string) => Promise<RegisterBody>, only?: string, signal?: AbortSignal): Promise<Registered> {
    let lastErr: Error = new Error('no supernode configured');
    for (const node of only !== undefined ? [only] : this.order(taskKey)) {
      signal?.throwIfAborted();
      try {
        const body = await make(node);
        // 609 (wait auth): a stock supernode still checking the source's credentials. Like
        // dfget, ask the same node again after 2.5 s, three times, then move on to the next.
        for (let wait = 0; ; wait++) {
          const res = await this.whileAlive(node, (signal) =>
            send(`http://${node}/peer/registry`, {
              method: 'POST',
              headers: { 'content-type': 'application/json;charset=utf-8' },
              body: JSON.stringify(body),
              agent: this.agent,
              signal,
              timeoutMs: 60_000,
              totalMs: this.replyTimeoutMs,
            }),
          );
          const json = (await readJson(res.body)) as RegistryAnswer;
          if (json.code === Code.Success && json.data) {
            this.failedAt.delete(node);
            const d = json.data;
            return { node, taskId: d.taskId, fileLength: d.fileLength, pieceSize: d.pieceSize, busyReports: d.busyReports === true, cdnSource: d.cdnSource };
          }
          if (json.code === Code.WaitAuth && wait < 3) {
            await sleep(this.waitAuthMs);
            continue;
          }
          if (json.code === Code.URLNotReachable || json.code === Code.NeedAuth) throw new RegisterRefused(json.code, json.msg ?? `code ${json.code}`);
          throw new Error(refusal(node, res.status, json, body.port));
        }
      } catch (err) {
        if (err instanceof RegisterRefused) throw err;
        // This process ran out of descriptors: the node is not at fault, and the next node (or
        // the origin) would fare no better.
        const local = outOfFdsError(err, `registering with supernode ${node}`);
        if (local) throw local;
        lastErr = err as Error;
        this.failedAt.set(node, this.now());
        this.localIPs.delete(node);
        this.log.warn({ node, err: lastErr.message }, 'supernode registration failed, trying the next');
      }
    }
    throw lastErr;
  }

  /**
   * Run a request to `node`, checking every livenessMs until its head arrives that the node still
   * answers at all; when it does not, the request is cut with an error that says so.
   */
  private async whileAlive(node: string, run: (signal: AbortSignal) => Promise<Answer>): Promise<Answer> {
    const cut = new AbortController();
    const t0 = Date.now();
    let answered = false;
    let timer: NodeJS.Timeout | undefined;
    const check = async () => {
      const alive = await this.ping(node);
      if (answered) return;
      if (!alive) {
        cut.abort(new Error(`supernode ${node} sent no answer in ${Date.now() - t0} ms and does not answer /_ping`));
        return;
      }
      timer = setTimeout(() => void check(), this.livenessMs);
    };
    timer = setTimeout(() => void check(), this.livenessMs);
    try {
      return await run(cut.signal);
    } catch (err) {
      throw cut.signal.aborted ? (cut.signal.reason as Error) : err;
    } finally {
      answered = true;
      clearTimeout(timer);
    }
  }

  /** Whether the node answers HTTP at all (any status), on a connection of its own. */
  private async ping(node: string): Promise<boolean> {
    try {
      const res = await send(`http://${node}/_ping`, { agent: this.pingAgent, timeoutMs: PING_MS, totalMs: PING_MS });
      discard(res.body);
      return true;
    } catch {
      return false;
    }
  }

  async next(node: string, q: TaskQuery, signal?: AbortSignal): Promise<TaskAnswer> {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) qs.set(k, String(v));
    const res = await send(`http://${node}/peer/task?${qs}`, { agent: this.agent, signal, timeoutMs: 60_000, totalMs: this.replyTimeoutMs });
    const json = (await readJson(res.body)) as TaskAnswer;
    if (res.status === 404) throw new TaskUnknown(node, `supernode ${node} no longer knows task ${q.taskId}: ${json.msg ?? ''}`);
    if (res.status !== 200) throw new Error(`supernode ${node} /peer/task HTTP ${res.status}: ${json.msg ?? ''}`);
    return json;
  }

  /**
   * GET /peer/piece/suc: a stock supernode records a piece's new holder, and frees the CDN's
   * slot for the task, only here. Tried three times, as dfget does; false when none went through.
   */
  async pieceSuc(node: string, p: { taskId: string; cid: string; dstCid: string; pieceRange: string }, attempts = 3): Promise<boolean> {
    for (let i = 0; i < attempts; i++) {
      try {
        const res = await send(`http://${node}/peer/piece/suc?${new URLSearchParams(p)}`, { agent: this.agent, timeoutMs: 10_000, totalMs: 10_000 });
        const json = (await readJson(res.body)) as { code?: number };
        if (res.status === 200 && (json.code === Code.PieceSuccess || json.code === Code.Success)) return true;
      } catch {
        // The next attempt, or the caller's fallback, covers it.
      }
    }
    return false;
  }

  /** Fire-and-forget notifications (service down); failures only matter to the log. */
  async notify(node: string, path: string, params: Record<string, string>): Promise<void> {
    const res = await send(`http://${node}${path}?${new URLSearchParams(params)}`, { agent: this.agent, timeoutMs: 10_000 });
    discard(res.body);
  }

  /**
   * Tell each task's supernode this peer no longer serves it (`/peer/service/down`), as a
   * dfget server does when it exits, so no peer is sent to fetch from a closed port.
   *
   * A few at a time, all within `timeoutMs`: a stop must fit Docker's stop grace however many
   * tasks are cached, and thousands of requests at once only queue behind each other. Each
   * request gets the time left as its own timer rather than a shared AbortSignal, which would
   * carry one listener per request. What the deadline cuts off, the supernode learns when it
   * expires this peer, as it does for one that died.
   */
  async leave(tasks: Iterable<{ taskId: string; node: string | undefined }>, cid: string, timeoutMs = 2_000, concurrency = LEAVE_CONCURRENCY): Promise<void> {
    const todo = [...tasks].filter((t): t is { taskId: string; node: string } => t.node !== undefined);
    const deadline = Date.now() + timeoutMs;
    let next = 0;
    let sent = 0;
    let failed = 0;
    const worker = async () => {
      for (let left = deadline - Date.now(); next < todo.length && left > 0; left = deadline - Date.now()) {
        const t = todo[next++];
        sent++;
        try {
          const res = await send(`http://${t.node}/peer/service/down?${new URLSearchParams({ taskId: t.taskId, cid })}`, { agent: this.agent, timeoutMs: left, totalMs: left });
          await drain(res.body);
        } catch {
          failed++;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, todo.length) }, worker));
    if (failed > 0 || sent < todo.length) this.log.debug({ tasks: todo.length, failed, unsent: todo.length - sent }, 'could not announce leaving to every supernode');
  }

  markFailed(node: string): void {
    this.failedAt.set(node, this.now());
  }

  async close(): Promise<void> {
    this.agent.destroy();
    this.pingAgent.destroy();
  }
}

/** Service-down requests in flight at once when the daemon stops. */
const LEAVE_CONCURRENCY = 8;

/** How long a node has to answer GET /_ping while a registration waits on it. */
const PING_MS = 3_000;

/** A stock supernode validates the peer port against this range (its swagger). */
const STOCK_PORTS = { min: 15000, max: 65000 };

/** Why a registration was refused, in words an operator can act on. */
function refusal(node: string, status: number, json: RegistryAnswer, port: number): string {
  const why = [json.msg, json.message].filter(Boolean).join(' ');
  const base = `supernode ${node} answered HTTP ${status} code ${json.code}: ${why}`;
  // Our default peer port (the proxy's 65001) is outside what a stock supernode accepts, and its
  // answer names only the field: say what to change.
  if (/port/i.test(why) && port !== 0 && (port < STOCK_PORTS.min || port > STOCK_PORTS.max)) {
    return `${base} (it refused our peer port ${port}: a stock Dragonfly supernode takes ${STOCK_PORTS.min}-${STOCK_PORTS.max} only; set peerPort in dfdaemon.yml to a port in that range)`;
  }
  return base;
}

export function splitHostPort(node: string): [string, number] {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(node);
  return m ? [m[1], Number(m[2])] : [node, 8002];
}
