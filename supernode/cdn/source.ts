import { Agent, interceptors, request, type Dispatcher } from 'undici';
import type { Readable } from 'node:stream';
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

const agents = new Map<string, Dispatcher>();

/**
 * One keep-alive agent per TLS setting: the system CA store plus the peer's rootCAs, or no
 * verification for `insecure`. Registries redirect blobs to storage, so follow redirects.
 */
function agentFor(insecure: boolean, rootCAs: string[]): Dispatcher {
  const key = `${insecure}|${rootCAs.join('')}`;
  let a = agents.get(key);
  if (!a) {
    a = new Agent({ connect: upstreamTls(insecure, rootCAs), headersTimeout: 30_000, bodyTimeout: 60_000 }).compose(
      interceptors.redirect({ maxRedirections: 5 }),
    );
    agents.set(key, a);
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

export async function openSource(url: string, opts: SourceOptions): Promise<SourceResponse> {
  const headers = forwardableHeaders(opts.headers);
  if (opts.from && opts.from > 0) headers.range = `bytes=${opts.from}-`;
  const res = await request(url, {
    method: 'GET',
    headers,
    dispatcher: agentFor(opts.insecure, opts.rootCAs),
    signal: opts.signal,
  });
  const cl = res.headers['content-length'];
  let length = typeof cl === 'string' && /^\d+$/.test(cl) ? Number(cl) : -1;
  if (res.statusCode === 206) {
    const cr = res.headers['content-range'];
    const m = typeof cr === 'string' ? /\/(\d+)$/.exec(cr) : null;
    length = m ? Number(m[1]) : -1;
  }
  return { status: res.statusCode, length, headers: res.headers, body: res.body };
}
