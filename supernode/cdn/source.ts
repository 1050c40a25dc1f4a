import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import { getFollowing } from '../../shared/http/client.js';
import { upstreamTls } from '../../shared/tls/ca-store.js';

export interface SourceOptions {
  headers: Record<string, string>;
  insecure: boolean;
  /** Extra trusted CAs, PEM. */
  rootCAs: string[];
  /** Resume from this raw byte offset (Range: bytes=n-). */
  from?: number;
  signal?: AbortSignal;
}

export interface SourceResponse {
  status: number;
  /** -1 when the origin did not say. */
  length: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

const HEAD_TIMEOUT_MS = 30_000;
/** An origin that sends nothing for this long has stalled; the task fails and may be retried. */
const BODY_IDLE_MS = 60_000;
const httpAgent = new HttpAgent({ keepAlive: true });
const httpsAgents = new Map<string, HttpsAgent>();

/** One keep-alive agent per TLS setting: the system CA store plus the peer's rootCAs, or none. */
function agentFor(url: string, insecure: boolean, rootCAs: string[]): HttpAgent | HttpsAgent {
  if (!url.startsWith('https:')) return httpAgent;
  const key = `${insecure}|${rootCAs.join('')}`;
  let a = httpsAgents.get(key);
  if (!a) {
    a = new HttpsAgent({ keepAlive: true, ...upstreamTls(insecure, rootCAs) });
    httpsAgents.set(key, a);
  }
  return a;
}

const DROP = new Set(['host', 'range', 'connection', 'proxy-connection', 'keep-alive', 'transfer-encoding', 'te', 'upgrade', 'accept-encoding', 'content-length']);

/** The headers a registering peer sent, minus those that would change what the origin returns. */
export function forwardableHeaders(h: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (!DROP.has(k.toLowerCase())) out[k] = v;
  return out;
}

/** GET the origin (following registries' redirects to storage), from a raw offset if resuming. */
export async function openSource(url: string, opts: SourceOptions): Promise<SourceResponse> {
  const headers = forwardableHeaders(opts.headers);
  if (opts.from && opts.from > 0) headers.range = `bytes=${opts.from}-`;
  const res = await getFollowing(url, {
    headers,
    signal: opts.signal,
    timeoutMs: HEAD_TIMEOUT_MS,
    agentFor: (u) => agentFor(u, opts.insecure, opts.rootCAs),
  });
  const sock = res.body.socket;
  if (sock) {
    // The socket goes back to the keep-alive pool afterwards: undo the idle timer then.
    const onIdle = () => res.body.destroy(new Error(`origin sent nothing for ${BODY_IDLE_MS / 1000} s`));
    sock.setTimeout(BODY_IDLE_MS);
    sock.on('timeout', onIdle);
    res.body.once('close', () => {
      sock.off('timeout', onIdle);
      sock.setTimeout(0);
    });
  }
  const cl = res.headers['content-length'];
  let length = typeof cl === 'string' && /^\d+$/.test(cl) ? Number(cl) : -1;
  if (res.status === 206) {
    const cr = res.headers['content-range'];
    const m = typeof cr === 'string' ? /\/(\d+)$/.exec(cr) : null;
    length = m ? Number(m[1]) : -1;
  }
  return { status: res.status, length, headers: res.headers, body: res.body };
}
