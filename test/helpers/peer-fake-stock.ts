// A stand-in for a stock Dragonfly 1.0.x supernode, applying its rules where our dfdaemon used to
// rely on ours: no long-poll, a 701 without a range is a 501 (param error), a 702 records no
// piece, the CDN's per-task slots (peerDownLimit) are freed only by /peer/piece/suc, ranges are
// always full-size, and the peer port must be 15000-65000. Pieces come from its own download
// endpoint in the wrapped format, clamped at the end of the file as nginx does.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { WRAP_OVERHEAD, WRAP_TAIL, wrapHeader } from '../../shared/protocol/pieces.js';
import { taskId as computeTaskId } from '../../shared/protocol/taskid.js';

export interface StockOptions {
  /** Wrapped piece size the "CDN" cuts blobs into. */
  pieceSize: number;
  /** Answer 602 to every /peer/task for this long after a task's first registration. */
  waitMs?: number;
  /** peerDownLimit: CDN pieces running at once per task, and pieces per client. */
  downLimit?: number;
  /** The registration answer's cdnSource; with 'source' pieces carry no md5, as stock's do. */
  cdnSource?: 'supernode' | 'source';
  /** Hold each piece this long before sending it. */
  pieceDelayMs?: number;
  /** Hold each registration this long before answering it. */
  registerDelayMs?: number;
  /** Forget every peer once this many /peer/piece/suc came in (as after a task GC). */
  forgetAfterSuc?: number;
  /** Down: every request has its connection reset. */
  down?: boolean;
}

export interface TaskCall {
  at: number;
  q: Record<string, string>;
  code: number;
}

interface Task {
  id: string;
  data: Buffer;
  wrapped: Buffer;
  count: number;
  md5s: string[];
  registeredAt: number;
  /** cid → pieces it holds */
  held: Map<string, Set<number>>;
  /** cid → pieces it runs (from the CDN) */
  running: Map<string, Set<number>>;
  cdnLoad: number;
}

export interface FakeStock {
  node: string;
  port: number;
  /** Blobs the "CDN" has, by taskUrl. */
  blobs: Map<string, Buffer>;
  opts: StockOptions;
  /** Answered registrations, `at` when the answer went out. */
  registrations: { at: number; cid: string; port: number; taskId?: string }[];
  taskCalls: TaskCall[];
  pieceSuc: Record<string, string>[];
  serviceDown: { at: number; q: Record<string, string> }[];
  piecesServed: number;
  /** Forget every client's registration (a restart with the task kept elsewhere, or GC). */
  forgetPeers(): void;
  close(): Promise<void>;
}

function reply(res: ServerResponse, body: unknown, status = 200): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

export async function startFakeStock(o: StockOptions): Promise<FakeStock> {
  const tasks = new Map<string, Task>();
  const limit = o.downLimit ?? 4;
  const ps = o.pieceSize;
  const cs = ps - WRAP_OVERHEAD;

  const taskFor = (url: string): Task | undefined => {
    const data = fake.blobs.get(url);
    if (!data) return undefined;
    const id = computeTaskId(url);
    let t = tasks.get(id);
    if (t) return t;
    const count = Math.max(1, Math.ceil(data.length / cs));
    const parts: Buffer[] = [];
    const md5s: string[] = [];
    for (let n = 0; n < count; n++) {
      const content = data.subarray(n * cs, Math.min(data.length, (n + 1) * cs));
      const piece = Buffer.concat([wrapHeader(content.length, ps), content, Buffer.from([WRAP_TAIL])]);
      md5s.push(`${createHash('md5').update(piece).digest('hex')}:${piece.length}`);
      parts.push(piece);
    }
    t = { id, data, wrapped: Buffer.concat(parts), count, md5s, registeredAt: Date.now(), held: new Map(), running: new Map(), cdnLoad: 0 };
    tasks.set(id, t);
    return t;
  };

  const pieceOf = (range: string | undefined): number | undefined => {
    const m = /^(\d+)-(\d+)$/.exec(range ?? '');
    if (!m || Number(m[1]) % ps !== 0) return undefined;
    return Number(m[1]) / ps;
  };

  const onTask = (q: Record<string, string>): { code: number; msg?: string; data?: unknown } => {
    const t = tasks.get(q.taskId);
    const held = t?.held.get(q.srcCid);
    const running = t?.running.get(q.srcCid);
    if (!t || !held || !running) return { code: 502, msg: 'data not found' };
    if (q.status === '702') return { code: 600, data: null };
    if (q.status === '701') {
      const n = pieceOf(q.range);
      if (n === undefined) return { code: 501, msg: `invalid value: pieceRange: ${q.range ?? ''}` };
      if (q.result === '501' || q.result === '503') held.add(n);
      else if (q.result !== '500') return { code: 501, msg: `failed to convert result: ${q.result}` };
      // A result frees the client's slot, not the CDN's: that is /peer/piece/suc's job.
      running.delete(n);
    } else if (q.status !== '700') {
      return { code: 501, msg: 'bad status' };
    }
    if (Date.now() - t.registeredAt < (o.waitMs ?? 0)) return { code: 602, msg: 'wait' };
    if (held.size === t.count) return { code: 600, data: { md5: '', fileLength: t.wrapped.length } };
    if (running.size >= limit) return { code: 601, data: null };
    const free: number[] = [];
    for (let n = 0; n < t.count && running.size + free.length < limit && t.cdnLoad + free.length < limit; n++) {
      if (!held.has(n) && !running.has(n)) free.push(n);
    }
    if (free.length === 0) return { code: 602, msg: 'wait' };
    t.cdnLoad += free.length;
    for (const n of free) running.add(n);
    return {
      code: 601,
      data: free.map((n) => ({
        // Full size, the short last piece too.
        range: `${n * ps}-${n * ps + ps - 1}`,
        pieceNum: n,
        pieceSize: ps,
        pieceMd5: o.cdnSource === 'source' ? '' : t.md5s[n],
        cid: `cdnnode:127.0.0.1~${t.id}`,
        peerIp: '127.0.0.1',
        peerPort: fake.port,
        path: `/download/${t.id.slice(0, 3)}/${t.id}`,
        downLink: 0,
      })),
    };
  };

  const onRequest = async (req: IncomingMessage, res: ServerResponse) => {
    if (o.down) return void req.socket.destroy();
    const u = new URL(req.url ?? '/', 'http://x');
    const q = Object.fromEntries(u.searchParams);
    if (req.method === 'POST' && u.pathname === '/peer/registry') {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { cid: string; port: number; taskUrl: string };
      if (o.registerDelayMs) await sleep(o.registerDelayMs);
      if (o.down) return void req.socket.destroy();
      if (body.port !== 0 && (body.port < 15000 || body.port > 65000)) {
        fake.registrations.push({ at: Date.now(), cid: body.cid, port: body.port });
        // go-openapi's validation error, in the envelope of a stock handler error.
        const inner = JSON.stringify({ Code: 501, Msg: `invalid value: port in body should be less than or equal to 65000` });
        return reply(res, { code: 500, message: inner }, 500);
      }
      const t = taskFor(body.taskUrl);
      if (!t) return reply(res, { code: 607, msg: 'url not reachable' });
      fake.registrations.push({ at: Date.now(), cid: body.cid, port: body.port, taskId: t.id });
      t.held.set(body.cid, t.held.get(body.cid) ?? new Set());
      t.running.set(body.cid, new Set());
      return reply(res, { code: 200, msg: 'success', data: { taskId: t.id, fileLength: t.data.length, pieceSize: ps, cdnSource: o.cdnSource ?? 'supernode' } });
    }
    if (u.pathname === '/peer/task') {
      const a = onTask(q);
      fake.taskCalls.push({ at: Date.now(), q, code: a.code });
      return reply(res, a);
    }
    if (u.pathname === '/peer/piece/suc') {
      fake.pieceSuc.push(q);
      const t = tasks.get(q.taskId);
      const n = pieceOf(q.pieceRange);
      if (!t || !t.held.has(q.cid) || n === undefined) return reply(res, { code: 500, message: 'not found' }, 500);
      t.held.get(q.cid)!.add(n);
      if (q.dstCid.startsWith('cdnnode:')) t.cdnLoad = Math.max(0, t.cdnLoad - 1);
      reply(res, { code: 611, msg: 'success' });
      if (fake.pieceSuc.length === o.forgetAfterSuc) fake.forgetPeers();
      return;
    }
    if (u.pathname === '/peer/service/down') {
      fake.serviceDown.push({ at: Date.now(), q });
      return reply(res, { code: 612, msg: 'success' });
    }
    const m = /^\/download\/[0-9a-f]{3}\/([0-9a-f]{64})$/.exec(u.pathname);
    const t = m ? tasks.get(m[1]) : undefined;
    const r = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (!t || !r || Number(r[1]) >= t.wrapped.length) return void res.writeHead(416).end();
    // nginx clamps a range that ends past the file.
    const body = t.wrapped.subarray(Number(r[1]), Math.min(t.wrapped.length, Number(r[2]) + 1));
    if (o.pieceDelayMs) await sleep(o.pieceDelayMs);
    if (o.down) return void req.socket.destroy();
    fake.piecesServed++;
    res.writeHead(206, { 'content-length': body.length, 'content-range': `bytes ${r[1]}-${Number(r[1]) + body.length - 1}/${t.wrapped.length}` }).end(body);
  };

  const server: Server = createServer((req, res) => void onRequest(req, res).catch(() => res.destroy()));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  const fake: FakeStock = {
    node: `127.0.0.1:${port}`,
    port,
    opts: o,
    blobs: new Map(),
    registrations: [],
    taskCalls: [],
    pieceSuc: [],
    serviceDown: [],
    piecesServed: 0,
    forgetPeers() {
      for (const t of tasks.values()) {
        t.held.clear();
        t.running.clear();
      }
    },
    close() {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
  return fake;
}
