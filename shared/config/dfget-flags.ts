/**
 * dfget's command line (cmd/dfget/app/root.go in Dragonfly 1.0.6), used by the
 * `dfget` CLI and for dfdaemon's `dfget_flags`. Also holds the small
 * pflag-compatible tokenizer the supernode and dfdaemon loaders share.
 */
import { isIP } from 'node:net';
import { ConfigError } from '../errors.js';
import { describe, parseBool, parseDuration, parseEnum, parseHttpUrl, parseIP, parsePort, parsePositiveInt, parseSize } from '../units.js';

// ---------------------------------------------------------------------------
// Tokenizer

export interface FlagSpec {
  /** Long name without dashes. */
  readonly name: string;
  /** One-letter short name, if any. */
  readonly short?: string;
  /** Boolean flags take no value (`--debug`, or `--debug=false`). */
  readonly bool?: boolean;
  /** The value's placeholder in --help (`N`, `FILE`); VALUE when unset. */
  readonly arg?: string;
  /** One line for --help. The tables are the only list of flags, so help cannot miss one. */
  readonly help?: string;
}

/** Answered before any config is read (shared/protocol/version.ts), so in no table. */
export const INFO_FLAGS: readonly FlagSpec[] = [
  { name: 'help', short: 'h', bool: true, help: 'this text' },
  { name: 'version', short: 'v', bool: true, help: 'the version' },
];

/** The flag lines of a --help text, one per spec, in table order, then --help and --version. */
export function flagHelp(table: readonly FlagSpec[]): string {
  const specs = [...table, ...INFO_FLAGS];
  const left = specs.map((s) => `${s.short === undefined ? '    ' : `-${s.short}, `}--${s.name}${s.bool === true ? '' : ` ${s.arg ?? 'VALUE'}`}`);
  const width = Math.max(...left.map((l) => l.length)) + 2;
  return specs.map((s, i) => `  ${left[i].padEnd(width)}${s.help ?? ''}`.trimEnd()).join('\n');
}

export interface FlagToken {
  /** The long name. */
  readonly name: string;
  /** The value; `'true'` for a bare boolean flag. */
  readonly value: string;
  /** The flag as written (`-n`, `--node`), for messages. */
  readonly as: string;
}

/**
 * Splits argv the way pflag does: `--name value`, `--name=value`, `-n value`, `-n=value`,
 * `-nvalue`; boolean flags stand alone or take `=true|false`; `--` ends flags. A value
 * flag takes the next argument even if it starts with `-`. Unknown flags and positional
 * arguments are errors. `prefix` is put before the flag in error keys (`dfget_flags`).
 */
export function tokenizeFlags(argv: readonly string[], specs: readonly FlagSpec[], prefix = ''): FlagToken[] {
  const byLong = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short !== undefined).map((s) => [s.short as string, s]));
  const keyOf = (flag: string): string => (prefix === '' ? flag : `${prefix} ${flag}`);
  const out: FlagToken[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (typeof arg !== 'string') throw new ConfigError(keyOf(`argument ${i}`), `expected a string, got ${describe(arg)}`, arg);
    if (arg === '--') {
      if (i + 1 < argv.length) throw new ConfigError(keyOf(argv[i + 1]), 'unexpected argument', argv[i + 1]);
      break;
    }
    let spec: FlagSpec | undefined;
    let as: string;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      inline = eq < 0 ? undefined : arg.slice(eq + 1);
      as = `--${name}`;
      spec = byLong.get(name);
    } else if (arg.startsWith('-') && arg.length > 1) {
      const short = arg[1];
      as = `-${short}`;
      const rest = arg.slice(2);
      inline = rest === '' ? undefined : rest.startsWith('=') ? rest.slice(1) : rest;
      spec = byShort.get(short);
    } else {
      throw new ConfigError(keyOf(arg), 'unexpected argument (flags only)', arg);
    }
    if (spec === undefined) throw new ConfigError(keyOf(as), 'unknown flag', arg);
    let value: string;
    if (spec.bool === true) {
      value = inline ?? 'true';
    } else if (inline !== undefined) {
      value = inline;
    } else {
      if (i + 1 >= argv.length) throw new ConfigError(keyOf(as), 'flag needs a value', arg);
      value = argv[++i];
    }
    out.push({ name: spec.name, value, as });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Supernode addresses

export const DEFAULT_SUPERNODE_PORT = 8002;

export interface SupernodeAddress {
  readonly host: string;
  readonly port: number;
  /** Weight as written (default 1); expandNodes divides by the GCD. */
  readonly weight: number;
  /** `host:port` (IPv6 hosts in brackets). */
  readonly addr: string;
}

const HOSTNAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;

/** Parses one `host[:port][=weight]` (Dragonfly's NodeWeight; IPv6 as `[::1]:8002`). */
export function parseNode(value: string, key: string): SupernodeAddress {
  const s = value.trim();
  const bad = (why: string): ConfigError =>
    new ConfigError(key, `invalid supernode ${JSON.stringify(value)} (${why}; expected host[:port][=weight])`, value);
  const parts = s.split('=');
  if (parts.length > 2) throw bad('more than one "="');
  let weight = 1;
  if (parts.length === 2) {
    if (!/^\d+$/.test(parts[1]) || Number(parts[1]) < 1) throw bad('weight must be a positive integer');
    weight = Number(parts[1]);
  }
  const hostPort = parts[0];
  let host: string;
  let portText: string | undefined;
  if (hostPort.startsWith('[')) {
    const close = hostPort.indexOf(']');
    if (close < 0) throw bad('unclosed "["');
    host = hostPort.slice(1, close);
    const rest = hostPort.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':')) throw bad('junk after "]"');
    portText = rest === '' ? undefined : rest.slice(1);
    if (isIP(host) !== 6) throw bad('not an IPv6 address in brackets');
  } else {
    const hp = hostPort.split(':');
    if (hp.length > 2) throw bad('too many ":"; write IPv6 as [addr]:port');
    host = hp[0];
    portText = hp[1];
    if (!HOSTNAME_RE.test(host)) throw bad(host === '' ? 'empty host' : `invalid host ${JSON.stringify(host)}`);
  }
  let port = DEFAULT_SUPERNODE_PORT;
  if (portText !== undefined) {
    if (!/^\d+$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) throw bad('port must be 1-65535');
    port = Number(portText);
  }
  const addr = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return { host, port, weight, addr };
}


/** Parses a comma-separated `--node` value (empty items are skipped). */
export function parseNodeList(value: string, key: string): SupernodeAddress[] {
  return value.split(',').map((v) => v.trim()).filter((v) => v !== '').map((v) => parseNode(v, key));
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/**
 * Dragonfly's weight rule: divide all weights by their GCD, repeat each node's `host:port`
 * weight times, then shuffle (Fisher-Yates with `random`, which returns [0, 1)).
 */
export function expandNodes(nodes: readonly SupernodeAddress[], random: () => number = Math.random): string[] {
  if (nodes.length === 0) return [];
  const g = nodes.reduce((acc, n) => gcd(acc, n.weight), 0) || 1;
  const out: string[] = [];
  for (const n of nodes) for (let i = 0; i < n.weight / g; i++) out.push(n.addr);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.min(i, Math.floor(random() * (i + 1)));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

// ---------------------------------------------------------------------------
// dfget flags

export type DfgetPattern = 'p2p' | 'cdn' | 'source';

export interface DfgetHeader {
  readonly name: string;
  readonly value: string;
}

/**
 * Parsed dfget flags. Optional fields are `undefined` when the flag was not given, so that a
 * caller (dfdaemon) can tell "not set" from a value; DFGET_DEFAULTS lists what dfget uses then.
 */
export interface DfgetFlags {
  readonly url: string | undefined;
  readonly output: string | undefined;
  /** Every `-n` value in order, weights as written. Use expandNodes for the try order. */
  readonly nodes: readonly SupernodeAddress[];
  /** `-f 'k1&k2'`: query keys dropped from the task URL. */
  readonly filter: readonly string[];
  readonly headers: readonly DfgetHeader[];
  readonly md5: string | undefined;
  readonly identifier: string | undefined;
  readonly callSystem: string | undefined;
  /** Bytes/s. */
  readonly localLimit: number | undefined;
  readonly totalLimit: number | undefined;
  readonly minRate: number | undefined;
  /** Milliseconds. */
  readonly timeout: number | undefined;
  readonly pattern: DfgetPattern;
  readonly notbs: boolean;
  readonly dfdaemon: boolean;
  readonly insecure: boolean;
  readonly cacerts: readonly string[];
  /** Uploader listen IP ('' = detect). */
  readonly ip: string;
  /** Uploader port (0 = pick in 15000-65000). */
  readonly port: number;
  /** Milliseconds. */
  readonly expireTime: number;
  readonly aliveTime: number;
  readonly home: string | undefined;
  readonly verbose: boolean;
  readonly showBar: boolean;
  readonly console: boolean;
  readonly clientQueue: number | undefined;
}

/** dfget's defaults for the optional fields above (root.go, config/constants.go). */
export const DFGET_DEFAULTS = Object.freeze({
  localLimit: 20 * 1024 * 1024,
  minRate: 64 * 1024,
  expireTime: 3 * 60_000,
  aliveTime: 5 * 60_000,
  /** Used when neither timeout nor a length/minrate estimate is available. */
  timeout: 5 * 60_000,
  clientQueue: 6,
});

/** dfget's flags with Dragonfly's meanings; also what `dfget --help` lists. */
export const DFGET_SPECS: readonly FlagSpec[] = [
  { name: 'url', short: 'u', arg: 'URL', help: 'what to download (http or https)' },
  { name: 'output', short: 'o', arg: 'FILE', help: 'where to write it, once verified (its directory is created)' },
  { name: 'node', short: 'n', arg: 'host[:port][=weight],...', help: 'supernodes (repeatable; port 8002 by default)' },
  { name: 'filter', short: 'f', arg: "'k1&k2'", help: 'query keys left out of the task ID, e.g. Expires&Signature' },
  { name: 'header', arg: "'Name: value'", help: 'request header for the origin (repeatable)' },
  { name: 'md5', short: 'm', arg: 'MD5', help: "the file's expected md5; a mismatch fails the download" },
  { name: 'identifier', short: 'i', arg: 'ID', help: 'task identity instead of the URL' },
  { name: 'callsystem', arg: 'NAME', help: 'accepted, ignored' },
  { name: 'locallimit', short: 's', arg: 'RATE', help: 'download rate limit (default 20M)' },
  { name: 'totallimit', arg: 'RATE', help: 'accepted, ignored' },
  { name: 'minrate', arg: 'RATE', help: 'accepted, ignored' },
  { name: 'timeout', short: 'e', arg: 'DURATION', help: 'give up after this long (e.g. 10m)' },
  { name: 'pattern', short: 'p', arg: 'p2p|cdn|source', help: 'source: straight from the origin; cdn downloads as p2p (default p2p)' },
  { name: 'notbs', bool: true, help: 'never fall back to the origin' },
  { name: 'dfdaemon', bool: true, help: 'accepted (every registration says dfdaemon)' },
  { name: 'insecure', bool: true, help: "skip verifying the origin's TLS certificate" },
  { name: 'cacerts', arg: 'FILE,...', help: 'CA certificates (PEM) trusted for the origin' },
  { name: 'ip', arg: 'IP', help: 'address peers fetch pieces from (default: the one that reaches the supernode)' },
  { name: 'port', arg: 'N', help: 'port peers fetch pieces from (default: any free port)' },
  { name: 'expiretime', arg: 'DURATION', help: 'accepted, ignored (dfget stops serving when it ends)' },
  { name: 'alivetime', arg: 'DURATION', help: 'accepted, ignored' },
  { name: 'home', arg: 'DIR', help: 'where the piece cache lives while downloading (default the temp directory)' },
  { name: 'verbose', bool: true, help: 'debug logging' },
  { name: 'showbar', short: 'b', bool: true, help: 'accepted, ignored (no progress bar)' },
  { name: 'console', bool: true, help: 'accepted, ignored' },
  { name: 'clientqueue', arg: 'N', help: 'accepted, ignored' },
];

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** dfget's flags as written, unparsed: for callers that must say which flags they do not use. */
export function tokenizeDfgetFlags(argv: readonly string[], prefix = ''): FlagToken[] {
  return tokenizeFlags(argv, DFGET_SPECS, prefix);
}

export interface ParseDfgetOptions {
  /** Prefix for error keys, e.g. `dfget_flags` when parsing dfdaemon's config. */
  readonly keyPrefix?: string;
}

/**
 * Parses dfget's flags. Repeated `-n`, `--header` and `--cacerts` accumulate (pflag's
 * `--node` would keep only the last); other repeated flags keep the last value.
 */
export function parseDfgetFlags(argv: readonly string[], options: ParseDfgetOptions = {}): DfgetFlags {
  const prefix = options.keyPrefix ?? '';
  const r: Mutable<DfgetFlags> = {
    url: undefined, output: undefined, nodes: [], filter: [], headers: [], md5: undefined,
    identifier: undefined, callSystem: undefined, localLimit: undefined, totalLimit: undefined,
    minRate: undefined, timeout: undefined, pattern: 'p2p', notbs: false, dfdaemon: false,
    insecure: false, cacerts: [], ip: '', port: 0, expireTime: DFGET_DEFAULTS.expireTime,
    aliveTime: DFGET_DEFAULTS.aliveTime, home: undefined, verbose: false, showBar: false,
    console: false, clientQueue: undefined,
  };
  const nodes: SupernodeAddress[] = [];
  const headers: DfgetHeader[] = [];
  const cacerts: string[] = [];
  for (const t of tokenizeFlags(argv, DFGET_SPECS, prefix)) {
    const key = prefix === '' ? t.as : `${prefix} ${t.as}`;
    const v = t.value;
    switch (t.name) {
      case 'url': r.url = parseHttpUrl(v, key); break;
      case 'output': r.output = nonEmpty(v, key); break;
      case 'node': nodes.push(...parseNodeList(v, key)); break;
      case 'filter': r.filter = v.split('&').filter((k) => k !== ''); break;
      case 'header': headers.push(parseHeader(v, key)); break;
      case 'md5':
        if (!/^[0-9a-fA-F]{32}$/.test(v)) throw new ConfigError(key, `expected 32 hex digits, got ${describe(v)}`, v);
        r.md5 = v.toLowerCase();
        break;
      case 'identifier': r.identifier = v; break;
      case 'callsystem': r.callSystem = v; break;
      case 'locallimit': r.localLimit = parseSize(v, key); break;
      case 'totallimit': r.totalLimit = parseSize(v, key); break;
      case 'minrate': r.minRate = parseSize(v, key); break;
      case 'timeout': r.timeout = parseDuration(v, key); break;
      case 'pattern': r.pattern = parseEnum(v, key, ['p2p', 'cdn', 'source'] as const); break;
      case 'notbs': r.notbs = parseBool(v, key); break;
      case 'dfdaemon': r.dfdaemon = parseBool(v, key); break;
      case 'insecure': r.insecure = parseBool(v, key); break;
      case 'cacerts': cacerts.push(...v.split(',').map((c) => c.trim()).filter((c) => c !== '')); break;
      case 'ip': r.ip = parseIP(v, key); break;
      case 'port': r.port = parsePort(v, key, true); break;
      case 'expiretime': r.expireTime = parseDuration(v, key); break;
      case 'alivetime': r.aliveTime = parseDuration(v, key); break;
      case 'home': r.home = nonEmpty(v, key); break;
      case 'verbose': r.verbose = parseBool(v, key); break;
      case 'showbar': r.showBar = parseBool(v, key); break;
      case 'console': r.console = parseBool(v, key); break;
      case 'clientqueue': r.clientQueue = parsePositiveInt(v, key); break;
      default: throw new ConfigError(key, 'unknown flag', v);
    }
  }
  return Object.freeze({
    ...r,
    nodes: Object.freeze(nodes.map((n) => Object.freeze(n))),
    filter: Object.freeze([...r.filter]),
    headers: Object.freeze(headers.map((h) => Object.freeze(h))),
    cacerts: Object.freeze(cacerts),
  });
}

/** `K: V` or `K:V` (split at the first colon, both sides trimmed), as dfget does. */
export function parseHeader(v: string, key: string): DfgetHeader {
  const colon = v.indexOf(':');
  const name = colon < 0 ? '' : v.slice(0, colon).trim();
  if (name === '' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
    throw new ConfigError(key, `expected a header "Name: value", got ${describe(v)}`, v);
  }
  return { name, value: v.slice(colon + 1).trim() };
}

function nonEmpty(v: string, key: string): string {
  if (v.trim() === '') throw new ConfigError(key, 'expected a non-empty value', v);
  return v;
}
