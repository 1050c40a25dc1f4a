import { connect } from 'node:net';
import { Agent, request } from 'undici';
import type { Logger } from '../../shared/log/index.js';

export interface RegisterBody {
  rawUrl: string;
  taskUrl: string;
  cid: string;
  ip: string;
  port: number;
  path: string;
  hostName: string;
  version: string;
  superNodeIp: string;
  headers: string[];
  dfdaemon: boolean;
  insecure: boolean;
  rootCAs: string[];
  md5?: string;
  identifier?: string;
  callSystem?: string;
}

export interface Registered {
  node: string;
  taskId: string;
  fileLength: number;
  pieceSize: number;
}

export interface TaskQuery {
  taskId: string;
  srcCid: string;
  status: number;
  range?: string;
  result?: number;
  dstCid?: string;
  /** Long-poll budget in ms; our supernode holds a "wait" open that long. */
  wait?: number;
}

export interface WirePiece {
  range: string;
  pieceNum: number;
  pieceSize: number;
  pieceMd5: string;
  pieceSha256?: string;
  cid: string;
  peerIp: string;
  peerPort: number;
  path: string;
}

export interface TaskAnswer {
  code: number;
  msg?: string;
  data?: WirePiece[] | { md5: string; fileLength: number } | null;
}

/** A registration the supernode refused for a source reason (607 unreachable, 609 auth). */
export class RegisterRefused extends Error {
  constructor(readonly dfCode: number, message: string) {
    super(message);
  }
}

const RETRY_FAILED_NODE_MS = 30_000;

/**
 * Talks to the supernodes in the order dfget_flags gives (weights already expanded). A node
 * that fails is skipped for a while and then tried again, so a restarted node is used again.
 */
export class SupernodeClient {
  private readonly agent = new Agent({ keepAliveTimeout: 30_000, headersTimeout: 60_000, connect: { timeout: 3_000 } });
  private readonly failedAt = new Map<string, number>();
  private readonly localIPs = new Map<string, { local: string; remote: string }>();

  /** `pick` gives a fresh weighted order per registration, as each dfget run shuffles anew. */
  constructor(
    private readonly pick: () => readonly string[],
    private readonly log: Logger,
  ) {}

  get hasNodes(): boolean {
    return this.pick().length > 0;
  }

  /** Try order: healthy nodes first, in configured order, then recently failed ones. */
  private order(): string[] {
    const now = Date.now();
    const uniq = [...new Set(this.pick())];
    const healthy = uniq.filter((n) => now - (this.failedAt.get(n) ?? -Infinity) >= RETRY_FAILED_NODE_MS);
    return [...healthy, ...uniq.filter((n) => !healthy.includes(n))];
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

  async register(make: (node: string) => Promise<RegisterBody>): Promise<Registered> {
    let lastErr: Error = new Error('no supernode configured');
    for (const node of this.order()) {
      try {
        const body = await make(node);
        const res = await request(`http://${node}/peer/registry`, {
          method: 'POST',
          headers: { 'content-type': 'application/json;charset=utf-8' },
          body: JSON.stringify(body),
          dispatcher: this.agent,
        });
        const json = (await res.body.json()) as { code?: number; msg?: string; data?: { taskId: string; fileLength: number; pieceSize: number } };
        if (json.code === 200 && json.data) {
          this.failedAt.delete(node);
          return { node, ...json.data };
        }
        if (json.code === 607 || json.code === 609) throw new RegisterRefused(json.code, json.msg ?? `code ${json.code}`);
        throw new Error(`supernode ${node} answered HTTP ${res.statusCode} code ${json.code}: ${json.msg ?? ''}`);
      } catch (err) {
        if (err instanceof RegisterRefused) throw err;
        lastErr = err as Error;
        this.failedAt.set(node, Date.now());
        this.localIPs.delete(node);
        this.log.warn({ node, err: lastErr.message }, 'supernode registration failed, trying the next');
      }
    }
    throw lastErr;
  }

  async next(node: string, q: TaskQuery, signal?: AbortSignal): Promise<TaskAnswer> {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) qs.set(k, String(v));
    const res = await request(`http://${node}/peer/task?${qs}`, { dispatcher: this.agent, signal });
    const json = (await res.body.json()) as TaskAnswer;
    if (res.statusCode !== 200) throw new Error(`supernode ${node} /peer/task HTTP ${res.statusCode}: ${json.msg ?? ''}`);
    return json;
  }

  /** Fire-and-forget notifications (service down); failures only matter to the log. */
  async notify(node: string, path: string, params: Record<string, string>): Promise<void> {
    const res = await request(`http://${node}${path}?${new URLSearchParams(params)}`, { dispatcher: this.agent });
    await res.body.dump();
  }

  markFailed(node: string): void {
    this.failedAt.set(node, Date.now());
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

export function splitHostPort(node: string): [string, number] {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(node);
  return m ? [m[1], Number(m[2])] : [node, 8002];
}
