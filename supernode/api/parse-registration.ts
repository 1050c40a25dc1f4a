import { validateHeaderName, validateHeaderValue } from 'node:http';
import { isIP } from 'node:net';
import { badRequest } from '../../shared/errors.js';
import { Params } from '../../shared/protocol/params.js';
import { requestedRange } from '../cdn/source.js';
import type { Registration } from '../service/types.js';

function httpUrl(p: Params, key: string, required: boolean): string {
  const s = p.str(key, { required, max: 8192 });
  if (!s) return s;
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw badRequest(`parameter ${key} is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw badRequest(`parameter ${key} must be an http or https URL`);
  return s;
}

/**
 * Headers go to the origin with every CDN fetch of the task, so one Node would refuse (a
 * control character, a bad name) or a Range we cannot serve as one slice is a 400 here, not a
 * failed fetch for everybody.
 */
function headers(p: Params): Record<string, string> {
  const out = rawHeaders(p);
  for (const [k, v] of Object.entries(out)) {
    try {
      validateHeaderName(k);
      validateHeaderValue(k, v);
    } catch {
      throw badRequest(`parameter headers has an invalid header ${JSON.stringify(k.slice(0, 60))}`);
    }
    if (k === 'Range' && !requestedRange({ Range: v })) throw badRequest('a Range header must be one byte range, bytes=a-b or bytes=a-');
  }
  return out;
}

/** Headers a registration may give, in either form. */
export const MAX_HEADERS = 128;
/**
 * Their total size (names, values and 4 bytes a line): what Node itself accepts in a request's
 * head, far past any registry token. They are kept with the task (up to maxTasks of them) and
 * sent with every fetch.
 */
export const MAX_HEADER_BYTES = 16 * 1024;

/** Headers arrive as Dragonfly's ["K:V", ...] or as an object. */
function rawHeaders(p: Params): Record<string, string> {
  const raw = p.raw('headers');
  const out: Record<string, string> = {};
  if (raw && typeof raw === 'object' && !Array.isArray(raw)) {
    const entries = Object.entries(raw);
    if (entries.length > MAX_HEADERS) throw badRequest('parameter headers has too many items');
    for (const [k, v] of entries) {
      if (typeof v !== 'string') throw badRequest('parameter headers must map names to strings');
      out[k] = v;
    }
  } else {
    for (const line of p.list('headers', { maxItems: MAX_HEADERS })) {
      const i = line.indexOf(':');
      if (i <= 0) throw badRequest(`parameter headers has a malformed entry ${JSON.stringify(line.slice(0, 60))}`);
      out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
  }
  let bytes = 0;
  for (const [k, v] of Object.entries(out)) bytes += k.length + v.length + 4;
  if (bytes > MAX_HEADER_BYTES) throw badRequest(`parameter headers is too large (over ${MAX_HEADER_BYTES} bytes)`);
  return out;
}

/**
 * Stock dfget names its file after the basename of -o, so the path may hold spaces and any
 * script (`/peer/file/镜像 1.tar-<sign>`). Other peers are sent to fetch it, so it must stay a
 * file under the uploader's /peer/file/: no control characters or line breaks, no dot segments
 * (also percent-encoded), no broken UTF-16.
 */
function peerPath(p: Params): string {
  const s = p.str('path', { max: 1024 });
  if (!s) return s;
  const dotSegment = (seg: string) => /^(?:\.|%2e){1,2}$/i.test(seg);
  if (!s.startsWith('/peer/file/') || s.length === '/peer/file/'.length) throw badRequest('parameter path must name a file under /peer/file/');
  if (/[\p{Cc}\p{Cs}\p{Zl}\p{Zp}]/u.test(s) || s.split('/').some(dotSegment)) {
    throw badRequest(`parameter path is malformed: ${JSON.stringify(s.slice(0, 80))}`);
  }
  return s;
}

/**
 * The task ID comes from taskUrl and the CDN fetches rawUrl, so a taskUrl naming anything but
 * rawUrl's content would let one registrant fill another URL's task with its own bytes. Stock
 * dfget and our dfdaemon send rawUrl with the -f query keys left out (Dragonfly's
 * FilterURLParam: the text before the first `?` untouched, then the `&`-separated parameters
 * that survive, in order), so that is all a taskUrl may differ by.
 */
function checkTaskUrl(taskUrl: string, rawUrl: string): void {
  if (taskUrl === rawUrl) return;
  const split = (u: string): [string, string[]] => {
    const q = u.indexOf('?');
    return q < 0 ? [u, []] : [u.slice(0, q), u.slice(q + 1).split('&')];
  };
  const [tBase, tParams] = split(taskUrl);
  const [rBase, rParams] = split(rawUrl);
  let i = 0;
  const subset = tParams.every((kv) => {
    while (i < rParams.length && rParams[i] !== kv) i++;
    return i++ < rParams.length;
  });
  if (tBase !== rBase || !subset) {
    throw badRequest('parameter taskUrl must be rawUrl, or rawUrl with some of its query parameters left out');
  }
}

export function parseRegistration(p: Params): Registration {
  const rawUrl = httpUrl(p, 'rawUrl', true);
  const ip = p.str('ip', { required: true, max: 64 });
  if (!isIP(ip)) throw badRequest('parameter ip must be an IP address');
  const superNodeIp = p.str('superNodeIp', { max: 256 });
  const rootCAs = p.list('rootCAs', { maxItems: 32 }).map((b64) => {
    const pem = Buffer.from(b64, 'base64').toString('utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw badRequest('parameter rootCAs must hold base64 PEM certificates');
    return pem;
  });
  const taskUrl = httpUrl(p, 'taskUrl', false) || rawUrl;
  checkTaskUrl(taskUrl, rawUrl);
  return {
    rawUrl,
    taskUrl,
    cid: p.str('cid', { required: true, max: 256 }),
    ip,
    port: p.int('port', { min: 0, max: 65535, def: 0 }),
    path: peerPath(p),
    hostName: p.str('hostName', { max: 256 }),
    version: p.str('version', { max: 64 }),
    superNodeIp,
    // dfget --md5: the whole file's md5 in hex. Anything else could never match, and finding
    // that out would cost a whole fetch from the origin.
    md5: p.str('md5', { max: 32, pattern: /^[0-9a-fA-F]{32}$/ }),
    identifier: p.str('identifier', { max: 256 }),
    headers: headers(p),
    insecure: p.bool('insecure'),
    rootCAs,
    dfdaemon: p.bool('dfdaemon'),
    relay: p.bool('relay'),
    callSystem: p.str('callSystem', { max: 128 }),
  };
}
