import { badRequest } from '../errors.js';

/**
 * Request parameters looked up case-insensitively: stock dfget sends `rawUrl` and `cid` where
 * Dragonfly's Go structs say `rawURL` and `cID`, and Go's JSON decoder accepts either.
 * Every accessor throws a 400 that names the parameter.
 */
export class Params {
  private readonly map = new Map<string, unknown>();

  constructor(...sources: unknown[]) {
    for (const src of sources) {
      if (src === null || src === undefined) continue;
      if (typeof src !== 'object' || Array.isArray(src)) throw badRequest('the request body must be a JSON object or a form');
      for (const [k, v] of Object.entries(src as Record<string, unknown>)) this.map.set(k.toLowerCase(), v);
    }
  }

  has(key: string): boolean {
    const v = this.map.get(key.toLowerCase());
    return v !== undefined && v !== null && v !== '';
  }

  raw(key: string): unknown {
    return this.map.get(key.toLowerCase());
  }

  str(key: string, opts: { required?: boolean; max?: number; pattern?: RegExp } = {}): string {
    const v = this.raw(key);
    if (v === undefined || v === null || v === '') {
      if (opts.required) throw badRequest(`missing parameter ${key}`);
      return '';
    }
    if (typeof v !== 'string' && typeof v !== 'number') throw badRequest(`parameter ${key} must be a string`);
    const s = String(v);
    if (s.length > (opts.max ?? 4096)) throw badRequest(`parameter ${key} is too long`);
    if (opts.pattern && !opts.pattern.test(s)) throw badRequest(`parameter ${key} is malformed: ${JSON.stringify(s.slice(0, 80))}`);
    return s;
  }

  int(key: string, opts: { required?: boolean; min?: number; max?: number; def?: number } = {}): number {
    const v = this.raw(key);
    if (v === undefined || v === null || v === '') {
      if (opts.required || opts.def === undefined) {
        if (opts.required) throw badRequest(`missing parameter ${key}`);
      }
      return opts.def ?? 0;
    }
    const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d{1,15}$/.test(v.trim()) ? Number(v) : NaN;
    if (!Number.isInteger(n)) throw badRequest(`parameter ${key} must be an integer`);
    if ((opts.min !== undefined && n < opts.min) || (opts.max !== undefined && n > opts.max)) {
      throw badRequest(`parameter ${key} must be between ${opts.min ?? '-inf'} and ${opts.max ?? 'inf'}`);
    }
    return n;
  }

  bool(key: string): boolean {
    const v = this.raw(key);
    if (v === undefined || v === null || v === '') return false;
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === '1') return true;
    if (v === 'false' || v === '0') return false;
    throw badRequest(`parameter ${key} must be a boolean`);
  }

  /** A list given as a JSON array, a repeated form key, or one string. */
  list(key: string, opts: { maxItems?: number } = {}): string[] {
    const v = this.raw(key);
    if (v === undefined || v === null || v === '') return [];
    const arr = Array.isArray(v) ? v : [v];
    if (arr.length > (opts.maxItems ?? 256)) throw badRequest(`parameter ${key} has too many items`);
    return arr.map((x) => {
      if (typeof x !== 'string') throw badRequest(`parameter ${key} must be a list of strings`);
      return x;
    });
  }
}
