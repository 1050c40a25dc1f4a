/**
 * Value parsing for configuration: Dragonfly's size and duration units, the
 * primitive checks every config key goes through, and the table-driven section
 * walker the supernode and dfdaemon schemas are built from.
 *
 * Every parser takes the value and the full key path (`base.maxBandwidth`,
 * `proxies[0].regx`, `--ratelimit`) and throws a ConfigError naming both.
 */
import { isIP } from 'node:net';
import { ConfigError } from './errors.js';

// ---------------------------------------------------------------------------
// Sizes

const KB = 1024;
const MB = 1024 * KB;
const GB = 1024 * MB;

/** Dragonfly's units (pkg/rate and pkg/fileutils together). Base 1024. */
const SIZE_UNITS: Readonly<Record<string, number>> = {
  '': 1, B: 1,
  K: KB, KB, k: KB,
  M: MB, MB, m: MB,
  G: GB, GB, g: GB,
};
const SIZE_RE = /^(\d+(?:\.\d+)?)(GB?|g|MB?|m|KB?|k|B)?$/;
const SIZE_FORMAT = 'G(B)/g/M(B)/m/K(B)/k/B or a pure number of bytes';

/**
 * Parses a Dragonfly size (`20M`, `200MB`, `100G`, `5GB`, `512k`, `4096`) into bytes.
 *
 * - Units are base 1024; a pure number (YAML number or digit string) is bytes.
 * - Extension over Go: a decimal mantissa with a K/M/G unit (`1.5M`) is accepted
 *   and rounded down to whole bytes. A fractional byte count (`1.5`, `1.5B`) is an error.
 * - Negative values are errors.
 */
export function parseSize(v: unknown, key: string): number {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new ConfigError(key, `expected a non-negative whole number of bytes or a size like "20M", got ${describe(v)}`, v);
    }
    return v;
  }
  if (typeof v !== 'string') {
    throw new ConfigError(key, `expected a size (${SIZE_FORMAT}), got ${describe(v)}`, v);
  }
  const m = SIZE_RE.exec(v.trim());
  if (m === null) throw new ConfigError(key, `expected a size (${SIZE_FORMAT}), got ${describe(v)}`, v);
  const unit = m[2] ?? '';
  const factor = SIZE_UNITS[unit];
  if (m[1].includes('.') && factor === 1) {
    throw new ConfigError(key, `a size in bytes must be a whole number, got ${describe(v)}`, v);
  }
  const bytes = Math.floor(Number(m[1]) * factor);
  if (!Number.isSafeInteger(bytes)) throw new ConfigError(key, `size too large, got ${describe(v)}`, v);
  return bytes;
}

/** Formats bytes the way Go's rate.Rate prints them (`20MB`, `1536KB`, `0B`); parseSize reads it back. */
export function formatSize(bytes: number): string {
  if (bytes === 0) return '0B';
  if (bytes % GB === 0) return `${bytes / GB}GB`;
  if (bytes % MB === 0) return `${bytes / MB}MB`;
  if (bytes % KB === 0) return `${bytes / KB}KB`;
  return `${bytes}B`;
}

// ---------------------------------------------------------------------------
// Durations

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000,
};
const DURATION_PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
const BARE_SECONDS = /^\d+(?:\.\d+)?$/;
const DURATION_FORMAT = 'a Go duration like "3m", "2m0s", "1h30m", "500ms", or a number of seconds';

/**
 * Parses a duration into milliseconds (possibly fractional below 1 ms).
 *
 * - Strings use Go's time.ParseDuration syntax: `3m`, `6s`, `2m0s`, `2h`, `1h30m`, `500ms`, `1.5h`.
 * - A bare number (YAML number or digit string) is **seconds**. Go's yaml.v2 would read a
 *   bare integer as nanoseconds, which no one means; pflag rejects it. `0` is zero either way.
 * - Negative durations are errors (no key in Dragonfly accepts one).
 */
export function parseDuration(v: unknown, key: string): number {
  return parseDurationValue(v, key);
}

/** parseDuration, but zero is an error (for loop intervals). */
export function parsePositiveDuration(v: unknown, key: string): number {
  const ms = parseDurationValue(v, key);
  if (ms <= 0) throw new ConfigError(key, `expected a duration greater than zero, got ${describe(v)}`, v);
  return ms;
}

function parseDurationValue(v: unknown, key: string): number {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0) {
      throw new ConfigError(key, `expected a non-negative number of seconds or ${DURATION_FORMAT}, got ${describe(v)}`, v);
    }
    return v * 1000;
  }
  if (typeof v !== 'string') throw new ConfigError(key, `expected ${DURATION_FORMAT}, got ${describe(v)}`, v);
  const s = v.trim();
  if (BARE_SECONDS.test(s)) return Number(s) * 1000;
  let ms = 0;
  let pos = 0;
  DURATION_PART.lastIndex = 0;
  while (pos < s.length) {
    DURATION_PART.lastIndex = pos;
    const m = DURATION_PART.exec(s);
    if (m === null) break;
    ms += Number(m[1]) * DURATION_UNITS[m[2]];
    pos = DURATION_PART.lastIndex;
  }
  if (s === '' || pos !== s.length || !Number.isFinite(ms)) {
    throw new ConfigError(key, `expected ${DURATION_FORMAT}, got ${describe(v)}`, v);
  }
  return ms;
}

/** Formats milliseconds like Go's Duration.String (`3m0s`, `2h0m0s`, `500ms`, `0s`); parseDuration reads it back. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1000;
  const sec = `${Number(s.toFixed(9))}s`;
  if (h > 0) return `${h}h${m}m${sec}`;
  if (m > 0) return `${m}m${sec}`;
  return sec;
}

// ---------------------------------------------------------------------------
// Primitive values

/** Renders a bad value for an error message: strings quoted, containers named. */
export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return String(v);
}

export function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export interface IntegerOptions {
  readonly min?: number;
  readonly max?: number;
}

/** Integers from YAML numbers or flag strings. */
export function parseInteger(v: unknown, key: string, opts: IntegerOptions = {}): number {
  const min = opts.min ?? Number.MIN_SAFE_INTEGER;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const what = min === 1 && max === Number.MAX_SAFE_INTEGER ? 'a positive integer'
      : min === 0 && max === Number.MAX_SAFE_INTEGER ? 'a non-negative integer'
      : `an integer between ${min} and ${max}`;
    throw new ConfigError(key, `expected ${what}, got ${describe(v)}`, v);
  }
  return n;
}

export const parsePositiveInt = (v: unknown, key: string): number => parseInteger(v, key, { min: 1 });
export const parseNonNegativeInt = (v: unknown, key: string): number => parseInteger(v, key, { min: 0 });

/** TCP port 1-65535; with `allowZero`, 0 too (meaning "pick one" or "off", per key). */
export function parsePort(v: unknown, key: string, allowZero = false): number {
  return parseInteger(v, key, { min: allowZero ? 0 : 1, max: 65535 });
}

/**
 * Spellings accepted as booleans: pflag's (`t`, `1`) plus YAML 1.1's (`yes`, `on`, `y`),
 * because Dragonfly's files were read by Go's yaml.v2 and our YAML 1.2 parser hands
 * those through as strings.
 */
const TRUE_WORDS = new Set(['true', 't', '1', 'yes', 'y', 'on']);
const FALSE_WORDS = new Set(['false', 'f', '0', 'no', 'n', 'off']);

/** Booleans from YAML or flag text, any case. */
export function parseBool(v: unknown, key: string): boolean {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (TRUE_WORDS.has(s)) return true;
    if (FALSE_WORDS.has(s)) return false;
  }
  throw new ConfigError(key, `expected true or false (or yes/no, on/off), got ${describe(v)}`, v);
}

/** A string; YAML null means empty. Numbers are not coerced (write `"8002"` if you mean text). */
export function parseString(v: unknown, key: string, nonEmpty = false): string {
  if (v === null && !nonEmpty) return '';
  if (typeof v !== 'string' || (nonEmpty && v.trim() === '')) {
    throw new ConfigError(key, `expected a ${nonEmpty ? 'non-empty ' : ''}string, got ${describe(v)}`, v);
  }
  return v;
}

export function parseStringList(v: unknown, key: string): string[] {
  if (v === null) return [];
  if (!Array.isArray(v)) throw new ConfigError(key, `expected a list of strings, got ${describe(v)}`, v);
  return v.map((item, i) => parseString(item, `${key}[${i}]`, true));
}

export function parseEnum<T extends string>(v: unknown, key: string, allowed: readonly T[]): T {
  if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
  throw new ConfigError(key, `expected one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${describe(v)}`, v);
}

/** An IPv4/IPv6 address, or '' for "detect automatically". */
export function parseIP(v: unknown, key: string): string {
  const s = parseString(v, key).trim();
  if (s !== '' && isIP(s) === 0) throw new ConfigError(key, `expected an IP address, got ${describe(v)}`, v);
  return s;
}

/** An http(s) URL, returned as given (trimmed). */
export function parseHttpUrl(v: unknown, key: string): string {
  const s = parseString(v, key, true).trim();
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new ConfigError(key, `expected an http(s) URL, got ${describe(v)}`, v);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new ConfigError(key, `expected an http(s) URL, got ${describe(v)}`, v);
  }
  return s;
}

/**
 * Compiles a Dragonfly (Go RE2) regular expression for unanchored matching, as Go's
 * MatchString does. A leading Go flag group such as `(?i)` or `(?is)` becomes JS flags.
 * The result is never global or sticky, so it is safe to share and freeze.
 */
export function parseRegExp(v: unknown, key: string): RegExp {
  const src = parseString(v, key, true);
  const flagGroup = /^\(\?([ims]+)\)/.exec(src);
  const flags = flagGroup === null ? '' : [...new Set(flagGroup[1])].join('');
  const body = flagGroup === null ? src : src.slice(flagGroup[0].length);
  try {
    return new RegExp(body, flags);
  } catch (err) {
    throw new ConfigError(key, `invalid regular expression ${JSON.stringify(src)}: ${(err as Error).message}`, v, { cause: err });
  }
}

// ---------------------------------------------------------------------------
// Sections

export type ValueParser<V> = (value: unknown, key: string) => V;

/** One YAML key: which field of the target it sets, and how its value is parsed. */
export interface FieldRule<T> {
  readonly field: keyof T & string;
  readonly parse: ValueParser<unknown>;
}

/** Binds a field to a parser whose result type matches the field. */
export function rule<T, K extends keyof T & string>(field: K, parse: ValueParser<T[K]>): FieldRule<T> {
  return { field, parse };
}

/** YAML key -> rule. Several keys may target one field (aliases); setting both is an error. */
export type SectionSchema<T> = Readonly<Record<string, FieldRule<T>>>;

export const joinKey = (path: string, key: string): string => (path === '' ? key : `${path}.${key}`);

/**
 * Applies a YAML mapping to `target` through `schema`. Null/absent sections leave the
 * defaults; a non-mapping, an unknown key or a bad value throws a ConfigError naming the path.
 */
export function parseSection<T>(raw: unknown, schema: SectionSchema<T>, path: string, target: T): void {
  if (raw === undefined || raw === null) return;
  if (!isMapping(raw)) throw new ConfigError(path, `expected a mapping, got ${describe(raw)}`, raw);
  const setBy = new Map<string, string>();
  for (const [k, value] of Object.entries(raw)) {
    const key = joinKey(path, k);
    const r = Object.hasOwn(schema, k) ? schema[k] : undefined;
    if (r === undefined) throw unknownKey(key, k, Object.keys(schema), value);
    const previous = setBy.get(r.field);
    if (previous !== undefined) throw new ConfigError(key, `duplicates ${joinKey(path, previous)}`, value);
    setBy.set(r.field, k);
    (target as Record<string, unknown>)[r.field] = r.parse(value, key);
  }
}

/** An "unknown key" error that suggests the nearest known key, or lists them all. */
export function unknownKey(key: string, name: string, known: readonly string[], value: unknown): ConfigError {
  let best: string | undefined;
  let bestDistance = 3;
  for (const k of known) {
    const d = k.toLowerCase() === name.toLowerCase() ? 0 : editDistance(k, name);
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  const hint = best === undefined ? `known keys: ${known.join(', ')}` : `did you mean ${best}?`;
  return new ConfigError(key, `unknown key (${hint})`, value);
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/** Parses a YAML list of mappings with `item` for each (`proxies[0]`, `proxies[1]`...). */
export function parseList<V>(raw: unknown, key: string, item: ValueParser<V>): V[] {
  if (raw === null || raw === undefined) return [];
  if (!Array.isArray(raw)) throw new ConfigError(key, `expected a list, got ${describe(raw)}`, raw);
  return raw.map((v, i) => item(v, `${key}[${i}]`));
}

/** Recursively freezes plain objects, arrays and the RegExps inside them. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}
