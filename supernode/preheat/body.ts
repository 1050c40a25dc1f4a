/** Checks on the JSON bodies Harbor and registries post; every failure is a 400 naming the field. */
import { badRequest } from '../../shared/errors.js';
import { parseManifestUrl } from './manifest.js';

export type Json = Record<string, unknown>;

export function object(v: unknown, what: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw badRequest(`${what} must be a JSON object`);
  return v as Json;
}

export function optionalString(o: Json, key: string, where = ''): string {
  const v = o[key];
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw badRequest(`${where}${key} must be a string, got ${JSON.stringify(v)}`);
  return v;
}

export function requiredString(o: Json, key: string, where = ''): string {
  const v = optionalString(o, key, where);
  if (v.trim() === '') throw badRequest(`${where}${key} is required`);
  return v.trim();
}

export function httpUrl(o: Json, key: string, where = ''): string {
  const s = requiredString(o, key, where);
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw badRequest(`${where}${key} must be an http(s) URL, got ${JSON.stringify(s)}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw badRequest(`${where}${key} must be an http(s) URL, got ${JSON.stringify(s)}`);
  return s;
}

/** Headers a caller wants sent to the registry; those that would change the answer's framing are dropped. */
const DROPPED = new Set(['host', 'accept', 'accept-encoding', 'range', 'content-length', 'content-type', 'connection',
  'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

export function headerMap(o: Json, key: string, where = ''): Record<string, string> {
  const v = o[key];
  if (v === undefined || v === null) return {};
  const m = object(v, `${where}${key}`);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(m)) {
    if (typeof val !== 'string') throw badRequest(`${where}${key}.${k} must be a string`);
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k) || /[\r\n]/.test(val)) throw badRequest(`${where}${key}.${k} is not a valid header`);
    if (!DROPPED.has(k.toLowerCase())) out[k] = val;
  }
  return out;
}

/** `Expires&Signature` (dfget `-f`, DF2 `filtered_query_params`) as a key list. */
export const filterKeys = (s: string): string[] => s.split('&').map((k) => k.trim()).filter((k) => k !== '');

/** Rejects an image URL that is not a manifest URL now, rather than as a failed job later. */
export function checkImageUrl(url: string): void {
  try {
    parseManifestUrl(url);
  } catch (err) {
    throw badRequest((err as Error).message);
  }
}
