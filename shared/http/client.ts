import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
}

export interface SendOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  agent?: HttpAgent | HttpsAgent;
  signal?: AbortSignal;
  /** No response head within this long fails the request. */
  timeoutMs?: number;
  /**
   * The whole exchange, body included, must end within this long. For small answers (the
   * supernode's JSON): a server that sends its head and then stalls must not hang the caller.
   */
  totalMs?: number;
}

/**
 * One request on node:http(s). Both daemons keep to the built-in client: loading undici alone
 * costs 8-20 MB of resident memory, and each process has 100 MB in all.
 */
export function send(url: string, o: SendOptions = {}): Promise<Answer> {
  const u = new URL(url);
  const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, {
    method: o.method ?? 'GET',
    headers: o.body === undefined ? o.headers : { ...o.headers, 'content-length': String(Buffer.byteLength(o.body)) },
    agent: o.agent,
    signal: o.signal,
  });
  return new Promise((resolve, reject) => {
    const what = `${o.method ?? 'GET'} ${u.origin}${u.pathname}`;
    const timer = o.timeoutMs ? setTimeout(() => req.destroy(new Error(`${what}: no answer in ${o.timeoutMs} ms`)), o.timeoutMs) : undefined;
    const total = o.totalMs ? setTimeout(() => req.destroy(new Error(`${what}: not complete in ${o.totalMs} ms`)), o.totalMs) : undefined;
    req.once('error', (err) => {
      clearTimeout(timer);
      clearTimeout(total);
      reject(err);
    });
    req.once('response', (res: IncomingMessage) => {
      clearTimeout(timer);
      if (total) res.once('close', () => clearTimeout(total));
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res });
    });
    req.end(o.body);
  });
}

/** A small JSON body (supernode answers); larger than 1 MiB is an error. */
export async function readJson(res: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of res as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > 1 << 20) throw new Error('JSON answer larger than 1 MiB');
    chunks.push(c);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

export function discard(res: IncomingMessage): void {
  res.resume();
}

/** Resolves once an answer's body has been read to the end (or the exchange broke off). */
export function drain(res: IncomingMessage): Promise<void> {
  return new Promise((resolve) => {
    res.once('end', resolve);
    res.once('close', resolve);
    res.resume();
  });
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** Credentials of one origin: never sent to another (Go's client, which Docker uses, does the same). */
const ORIGIN_BOUND = new Set(['authorization', 'proxy-authorization', 'cookie', 'cookie2']);

/**
 * GET following up to `max` redirects, as registries send blobs to storage. Credentials and
 * cookies are not carried to another origin (signed storage URLs also refuse a second
 * credential). A redirect from https to plain http storage is followed, as Docker does: the
 * blob's digest is checked at the end, and nothing secret goes with it.
 */
export async function getFollowing(url: string, o: SendOptions & { agentFor: (url: string) => HttpAgent | HttpsAgent; max?: number }): Promise<Answer> {
  let target = url;
  let headers = { ...o.headers };
  for (let hop = 0; ; hop++) {
    const res = await send(target, { ...o, headers, agent: o.agentFor(target) });
    const loc = res.headers.location;
    if (!REDIRECTS.has(res.status) || !loc || hop >= (o.max ?? 5)) return res;
    discard(res.body);
    const next = new URL(loc, target);
    if (next.origin !== new URL(target).origin) {
      headers = Object.fromEntries(Object.entries(headers).filter(([k]) => !ORIGIN_BOUND.has(k.toLowerCase())));
    }
    target = next.toString();
  }
}

/** A header's value as one string: the first when it came more than once. */
export function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** `Content-Range: bytes s-e/total` of a 206. */
export function contentRange(h: Record<string, string | string[] | undefined>): { start: number; end: number; total: number } | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(h['content-range'] ?? ''));
  return m ? { start: Number(m[1]), end: Number(m[2]), total: Number(m[3]) } : undefined;
}

/**
 * The whole entity's length: Content-Length of a 200, the total after the slash in
 * Content-Range of a 206; -1 when the answer does not say.
 */
export function entityLength(a: Pick<Answer, 'status' | 'headers'>): number {
  if (a.status === 206) {
    const m = /\/(\d+)$/.exec(String(a.headers['content-range'] ?? ''));
    return m ? Number(m[1]) : -1;
  }
  const cl = a.headers['content-length'];
  return typeof cl === 'string' && /^\d+$/.test(cl) ? Number(cl) : -1;
}
