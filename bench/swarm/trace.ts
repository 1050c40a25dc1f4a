// Preloaded into the daemons under test (node --import) so the benchmark can see where time
// goes without touching their code: every outgoing undici request and incoming HTTP request
// (start, first byte, end), plus once a second the event-loop delay, event-loop utilisation,
// CPU and RSS of the process. Lines go to $DFB_TRACE_FILE as JSON, flushed each second and at
// exit. Costs one small object per request, nothing per byte except on origin fetches.
import { subscribe } from 'node:diagnostics_channel';
import { appendFileSync } from 'node:fs';
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

const file = process.env.DFB_TRACE_FILE;
const now = () => performance.timeOrigin + performance.now();
let buf: string[] = [];
const emit = (o: Record<string, unknown>) => {
  buf.push(JSON.stringify(o));
};
const flush = () => {
  if (!file || buf.length === 0) return;
  const lines = buf;
  buf = [];
  try {
    appendFileSync(file, lines.join('\n') + '\n');
  } catch {
    /* tracing must never hurt the daemon */
  }
};

interface UndiciRequest {
  origin?: unknown;
  method?: string;
  path?: string;
  headers?: unknown;
}
interface OutRec {
  t0: number;
  th?: number;
  status?: number;
  bytes: number;
  /** Origin fetches only: times at which each further 4 MiB arrived. */
  marks?: number[];
}
const out = new WeakMap<object, OutRec>();

function header(h: unknown, name: string): string | undefined {
  if (Array.isArray(h)) {
    for (let i = 0; i + 1 < h.length; i += 2) if (String(h[i]).toLowerCase() === name) return String(h[i + 1]);
  } else if (typeof h === 'string') {
    const m = new RegExp(`^${name}:\\s*(.*)$`, 'im').exec(h);
    return m?.[1]?.trim();
  }
  return undefined;
}

const isOriginFetch = (r: UndiciRequest) => /\/v2\/.*\/blobs\//.test(r.path ?? '');
const MARK = 4 * 1024 * 1024;

if (file) {
  subscribe('undici:request:create', (m) => {
    const r = (m as { request: UndiciRequest }).request;
    out.set(r, { t0: now(), bytes: 0, ...(isOriginFetch(r) ? { marks: [] } : {}) });
  });
  subscribe('undici:request:headers', (m) => {
    const { request, response } = m as { request: UndiciRequest; response: { statusCode: number } };
    const rec = out.get(request);
    if (rec) {
      rec.th = now();
      rec.status = response.statusCode;
    }
  });
  subscribe('undici:request:bodyChunkReceived', (m) => {
    const { request, chunk } = m as { request: UndiciRequest; chunk: Buffer };
    const rec = out.get(request);
    if (!rec?.marks) return;
    const before = Math.floor(rec.bytes / MARK);
    rec.bytes += chunk.length;
    if (Math.floor(rec.bytes / MARK) > before) rec.marks.push(Math.round(now()));
  });
  const outDone = (r: UndiciRequest, err?: string) => {
    const rec = out.get(r);
    if (!rec) return;
    out.delete(r);
    emit({
      k: 'out',
      m: r.method,
      o: String(r.origin ?? ''),
      p: r.path,
      range: header(r.headers, 'range'),
      pn: header(r.headers, 'piecenum'),
      t0: rec.t0,
      th: rec.th,
      t1: now(),
      st: rec.status,
      ...(rec.marks ? { bytes: rec.bytes, marks: rec.marks } : {}),
      ...(err ? { err } : {}),
    });
  };
  subscribe('undici:request:trailers', (m) => outDone((m as { request: UndiciRequest }).request));
  subscribe('undici:request:error', (m) => {
    const { request, error } = m as { request: UndiciRequest; error: Error };
    outDone(request, error?.message ?? 'error');
  });

  // The same for node:http clients (newer dfdaemons fetch pieces with node:http). Its
  // "response.finish" channel fires when the response headers arrive; the body's end is ours.
  const httpOut = new WeakMap<object, number>();
  subscribe('http.client.request.start', (m) => {
    httpOut.set((m as { request: object }).request, now());
  });
  subscribe('http.client.response.finish', (m) => {
    const { request, response } = m as { request: ClientRequest; response: IncomingMessage };
    const t0 = httpOut.get(request);
    if (t0 === undefined) return;
    httpOut.delete(request);
    const th = now();
    let done = false;
    const end = (err?: string) => {
      if (done) return;
      done = true;
      const h = (name: string) => (request.getHeader(name) === undefined ? undefined : String(request.getHeader(name)));
      const len = Number(response.headers['content-length'] ?? -1);
      emit({ k: 'out', m: request.method, o: `http://${request.host}`, p: request.path, range: h('range'), pn: h('piecenum'), t0, th, t1: now(), st: response.statusCode, ...(len >= 0 ? { bytes: len } : {}), ...(err ? { err } : {}) });
    };
    response.once('end', () => end());
    response.once('close', () => end(response.complete ? undefined : 'aborted'));
  });

  const inbound = new WeakMap<object, number>();
  subscribe('http.server.request.start', (m) => {
    inbound.set((m as { request: IncomingMessage }).request, now());
  });
  subscribe('http.server.response.finish', (m) => {
    const { request, response } = m as { request: IncomingMessage; response: ServerResponse };
    const t0 = inbound.get(request);
    if (t0 === undefined) return;
    inbound.delete(request);
    emit({
      k: 'in',
      m: request.method,
      p: request.url,
      range: request.headers.range,
      t0,
      t1: now(),
      st: response.statusCode,
      len: Number(response.getHeader('content-length') ?? -1),
      // Who asked: piece clients that bypass node:http are still visible from the serving side.
      ra: request.socket?.remoteAddress,
      pn: request.headers.piecenum,
    });
  });

  const mb = (x: number) => +(x / 1048576).toFixed(1);
  const mem = () => {
    const m = process.memoryUsage();
    return { rssMB: mb(m.rss), heapMB: mb(m.heapUsed), heapTotalMB: mb(m.heapTotal), extMB: mb(m.external), abMB: mb(m.arrayBuffers) };
  };
  // Once a second: is this process's event loop, or the machine's CPU, the bottleneck?
  const eld = monitorEventLoopDelay({ resolution: 10 });
  eld.enable();
  let elu = performance.eventLoopUtilization();
  let cpu = process.cpuUsage();
  const sample = setInterval(() => {
    const e = performance.eventLoopUtilization(elu);
    elu = performance.eventLoopUtilization();
    const c = process.cpuUsage(cpu);
    cpu = process.cpuUsage();
    emit({
      k: 'sec',
      t: now(),
      elu: +e.utilization.toFixed(3),
      cpuMs: Math.round((c.user + c.system) / 1000),
      lagP99: +(eld.percentile(99) / 1e6).toFixed(1),
      lagMax: +(eld.max / 1e6).toFixed(1),
      ...mem(),
    });
    eld.reset();
    flush();
  }, 1000);
  sample.unref();
  process.on('exit', flush);
}
