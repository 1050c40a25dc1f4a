import type { Readable } from 'node:stream';
import { agentFor } from '../../shared/http/agents.js';
import { discard, entityLength, getFollowing, send } from '../../shared/http/client.js';

export interface SourceOptions {
  headers: Record<string, string>;
  insecure: boolean;
  /** Extra trusted CAs, PEM. */
  rootCAs: string[];
  /** Resume from this raw byte offset (Range: bytes=n-), counted from the start of `range`. */
  from?: number;
  /** A ranged task's slice of the origin's file (the registrant's Range). */
  range?: ByteRange;
  signal?: AbortSignal;
  /** Cut a body that sends nothing for this long (default SOURCE_IDLE_MS). */
  idleMs?: number;
  /** With `from`: the first answer's validator, so a changed file comes back whole (200), not spliced. */
  ifRange?: string;
}

export interface SourceResponse {
  status: number;
  /** -1 when the origin did not say. */
  length: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

const HEAD_TIMEOUT_MS = 30_000;
/**
 * An origin that sends nothing for this long has stalled: the fetch is cut and resumed with a
 * Range. Well under the 30 s a dfdaemon waits for swarm progress before it goes to the origin
 * itself, so a stall costs the peers one resumed request from the CDN, not one request each.
 */
export const SOURCE_IDLE_MS = 15_000;
const DROP = new Set(['host', 'range', 'if-range', 'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since', 'connection', 'proxy-connection', 'keep-alive', 'transfer-encoding', 'te', 'upgrade', 'accept-encoding', 'content-length']);

/** The headers a registering peer sent, minus those that would change what the origin returns. */
export function forwardableHeaders(h: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (!DROP.has(k.toLowerCase())) out[k] = v;
  return out;
}

/** GET the origin (following registries' redirects to storage), from a raw offset if resuming. */
export async function openSource(url: string, opts: SourceOptions): Promise<SourceResponse> {
  const headers = forwardableHeaders(opts.headers);
  const from = opts.from ?? 0;
  if (opts.range) headers.range = `bytes=${opts.range.start + from}-${opts.range.end ?? ''}`;
  else if (from > 0) {
    headers.range = `bytes=${from}-`;
    if (opts.ifRange) headers['if-range'] = opts.ifRange;
  }
  const res = await getFollowing(url, {
    headers,
    signal: opts.signal,
    timeoutMs: HEAD_TIMEOUT_MS,
    agentFor: (u) => agentFor(u, opts.insecure, opts.rootCAs),
  });
  const sock = res.body.socket;
  if (sock) {
    // The socket goes back to the keep-alive pool afterwards: undo the idle timer then.
    const idleMs = opts.idleMs ?? SOURCE_IDLE_MS;
    const onIdle = () => res.body.destroy(new Error(`origin sent nothing for ${idleMs / 1000} s`));
    sock.setTimeout(idleMs);
    sock.on('timeout', onIdle);
    res.body.once('close', () => {
      sock.off('timeout', onIdle);
      sock.setTimeout(0);
    });
  }
  return { status: res.status, length: entityLength(res), headers: res.headers, body: res.body };
}

/**
 * Whether the origin lets this requester at the URL: the status of a HEAD with its headers and
 * TLS settings, redirects not followed (the caller judges a 3xx). Throws
 * on a network error or when no answer comes within timeoutMs.
 */
export async function probeSource(url: string, opts: Pick<SourceOptions, 'headers' | 'insecure' | 'rootCAs'> & { timeoutMs: number }): Promise<number> {
  const ask = (method: 'HEAD' | 'GET', extra: Record<string, string> = {}) =>
    send(url, {
      method,
      headers: { ...forwardableHeaders(opts.headers), ...extra },
      agent: agentFor(url, opts.insecure, opts.rootCAs),
      timeoutMs: opts.timeoutMs,
      totalMs: opts.timeoutMs,
    });
  const res = await ask('HEAD');
  discard(res.body);
  // A presigned URL (S3, OSS, MinIO) signs its method: signed for GET, it refuses a HEAD. Ask
  // again the way the URL was signed for, for one byte, and read none of the answer.
  if ((res.status === 403 || res.status === 405) && new URL(url).search !== '') {
    const got = await ask('GET', { Range: 'bytes=0-0' });
    got.body.destroy();
    return got.status;
  }
  return res.status;
}

export interface ByteRange {
  start: number;
  /** Inclusive; open-ended when absent. */
  end?: number;
}

/**
 * The one byte range a ranged registration asks for (`Range: bytes=a-b` or `bytes=a-`). The
 * name is matched exactly, as for the task ID (Dragonfly's rule): another spelling is dropped
 * like any other range header, so the task is the whole file it is named after.
 */
export function requestedRange(h: Record<string, string>): ByteRange | undefined {
  const v = h['Range'];
  if (v === undefined) return undefined;
  const m = /^bytes=(\d{1,15})-(\d{1,15})?$/.exec(v.trim());
  if (!m || (m[2] !== undefined && Number(m[2]) < Number(m[1]))) return undefined;
  return { start: Number(m[1]), end: m[2] === undefined ? undefined : Number(m[2]) };
}
