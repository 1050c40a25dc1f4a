/**
 * dfdaemon configuration: Dragonfly 1.0.6's `dfdaemon.yml` (dfdaemon/config/config.go,
 * cmd/dfdaemon/app/root.go) plus the dfdaemon command line.
 * Precedence: defaults < YAML file < flags. Sizes are bytes, durations milliseconds.
 * Relative certificate paths resolve against the config file's directory (flags: the
 * working directory). The result is deeply frozen.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import {
  deepFreeze, describe, isMapping, parseBool, parseHttpUrl, parseIP, parseInteger, parseList,
  parsePort, parseRegExp, parseSection, parseSize, parseString, parseStringList, rule, type SectionSchema,
} from '../units.js';
import {
  parseDfgetFlags, parseNodeList, tokenizeDfgetFlags, tokenizeFlags, type DfgetFlags, type FlagSpec, type SupernodeAddress,
} from './dfget-flags.js';
import { ignoredLogConfig, readYamlFile } from './supernode.js';

export interface RegistryMirror {
  /** Registry that origin-form requests are reverse-proxied to. */
  readonly remote: string;
  readonly insecure: boolean;
  /** Absolute paths of PEM CA files trusted for `remote`. */
  readonly certs: readonly string[];
  /** Never use dfget for mirror requests. */
  readonly direct: boolean;
}

export interface ProxyRule {
  /** Matched (unanchored) against the full request URL; the first match wins. */
  readonly regx: RegExp;
  readonly useHttps: boolean;
  readonly direct: boolean;
  /** Host to redirect to; '' for none. */
  readonly redirect: string;
}

export interface HijackHost {
  /** Matched (unanchored) against CONNECT `host:port`. */
  readonly regx: RegExp;
  /** Skip upstream TLS verification for this host. */
  readonly insecure: boolean;
  /** Absolute paths of PEM CA files trusted for this host upstream. */
  readonly certs: readonly string[];
}

export interface HijackHttps {
  /** Absolute path of the PEM certificate (a CA signs per-host leaves), or null. */
  readonly cert: string | null;
  readonly key: string | null;
  /**
   * True when cert and key are both set: CONNECTs to matching hosts are terminated.
   * When false the hosts are still known: their insecure/certs apply to upstream TLS.
   */
  readonly enabled: boolean;
  readonly hosts: readonly HijackHost[];
}

export interface DfdaemonLogConfig {
  readonly path: string;
  readonly maxSize: number;
  readonly maxBackups: number;
}

export interface DfdaemonConfig {
  /** Proxy port. 0 = an ephemeral port (tests). */
  readonly port: number;
  /** Dragonfly's `hostIp` (unused by Dragonfly). */
  readonly hostIp: string;
  /** IP announced to the supernode; '' = detect by dialing the supernodes. */
  readonly localIP: string;
  /** Address the proxy and uploader bind to ('' = every interface). Ours, not Dragonfly's. */
  readonly listenIP: string;
  /** Uploader port; 0 = serve peers on the proxy port. */
  readonly peerPort: number;
  readonly streamMode: boolean;
  readonly registryMirror: RegistryMirror;
  readonly proxies: readonly ProxyRule[];
  /** null when the file has no `hijack_https` section. */
  readonly hijackHttps: HijackHttps | null;
  /** `dfget_flags` as written. */
  readonly dfgetFlags: readonly string[];
  /** `dfget_flags` parsed, then --urlfilter, --notbs and --callsystem on top. */
  readonly dfget: DfgetFlags;
  /** `--node` values when the command line has any (they replace the file's), else `supernodes` as written. */
  readonly supernodes: readonly string[];
  /**
   * The supernodes to use: the command line's `--node`s; else `supernodes` when non-empty
   * (Dragonfly passes them as a later `--node`, which wins); else the `--node`s inside
   * dfget_flags. Expand with expandNodes.
   */
  readonly nodes: readonly SupernodeAddress[];
  /** Bytes/s, per download and for the host's uploads. */
  readonly ratelimit: number;
  /** Bytes the local piece cache may take; idle files go least recently used first. Ours. */
  readonly cacheLimit: number;
  /** Piece uploads served at once; more are answered 503. Ours. */
  readonly maxConcurrentUploads: number;
  readonly workHome: string;
  readonly localrepo: string;
  /** Path of an external dfget (Dragonfly only; accepted, unused here). */
  readonly dfpath: string;
  readonly verbose: boolean;
  readonly maxprocs: number;
  /** TLS for dfdaemon's own listener: absolute paths or '' for plain HTTP. */
  readonly certpem: string;
  readonly keypem: string;
  readonly logConfig: DfdaemonLogConfig;
  readonly configFile: string | null;
  /** Settings given a value this dfdaemon does not act on, each with the reason; to warn about at startup. */
  readonly ignored: readonly string[];
}

export const DEFAULT_DFDAEMON_CONFIG_PATH = '/etc/dragonfly/dfdaemon.yml';
export const DEFAULT_REGISTRY = 'https://index.docker.io';
/** The cache only has to outlive a swarm's pull; Docker keeps its own copy of the image. */
export const DEFAULT_CACHE_LIMIT = 10 * 1024 ** 3;
/** Three times Dragonfly's peerUpLimit (5): room for a second supernode or a stock one. */
export const DEFAULT_MAX_UPLOADS = 16;
const DEFAULT_MAXPROCS = 4;
const DEFAULT_HOST_IP = '127.0.0.1';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Raw YAML values collected before paths are resolved and cross-checked. */
interface Draft {
  port: number;
  hostIp: string;
  localIP: string;
  listenIP: string;
  peerPort: number;
  streamMode: boolean;
  registryMirror: Mutable<RegistryMirror>;
  proxies: ProxyRule[];
  hijackHttps: HijackHttps | null;
  dfgetFlags: string[];
  /** Dragonfly 0.4-era dfdaemon flags that set dfget options; they win over dfget_flags. */
  dfgetOverrides: Partial<Mutable<Pick<DfgetFlags, 'filter' | 'notbs' | 'callSystem'>>>;
  supernodes: string[];
  /** `--node` values from the command line; null when none was given. */
  cliNodes: string[] | null;
  ratelimit: number;
  cacheLimit: number;
  maxConcurrentUploads: number;
  workHome: string;
  localrepo: string;
  dfpath: string;
  verbose: boolean;
  maxprocs: number;
  certpem: string;
  keypem: string;
  logConfig: Mutable<DfdaemonLogConfig>;
}

function defaults(env: NodeJS.ProcessEnv): Draft {
  return {
    port: 65001,
    hostIp: DEFAULT_HOST_IP,
    localIP: '',
    listenIP: '',
    peerPort: 0,
    streamMode: false,
    registryMirror: { remote: DEFAULT_REGISTRY, insecure: false, certs: [], direct: false },
    proxies: [],
    hijackHttps: null,
    dfgetFlags: [],
    dfgetOverrides: {},
    supernodes: [],
    cliNodes: null,
    ratelimit: 20 * 1024 * 1024,
    cacheLimit: DEFAULT_CACHE_LIMIT,
    maxConcurrentUploads: DEFAULT_MAX_UPLOADS,
    workHome: join(env.HOME ?? homedir(), '.small-dragonfly'),
    localrepo: '',
    dfpath: '',
    verbose: false,
    maxprocs: DEFAULT_MAXPROCS,
    certpem: '',
    keypem: '',
    logConfig: { path: '', maxSize: 0, maxBackups: 0 },
  };
}

// ---------------------------------------------------------------------------
// Files

type FileKind = 'cert' | 'key' | 'any';

/** Resolves a path against `baseDir` and checks it is a readable file of the expected PEM kind. */
function resolveFile(v: unknown, key: string, baseDir: string, kind: FileKind): string {
  const p = resolve(baseDir, parseString(v, key, true).trim());
  let text: string;
  try {
    if (!statSync(p).isFile()) throw new Error('not a regular file');
    text = readFileSync(p, 'utf8');
  } catch (err) {
    throw new ConfigError(key, `cannot read ${p}: ${(err as Error).message}`, v, { cause: err });
  }
  if (kind === 'cert' && !text.includes('-----BEGIN CERTIFICATE-----')) {
    throw new ConfigError(key, `${p} holds no PEM certificate`, v);
  }
  if (kind === 'key' && !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    throw new ConfigError(key, `${p} holds no PEM private key`, v);
  }
  return p;
}

const certList = (baseDir: string) => (v: unknown, key: string): string[] =>
  parseStringList(v, key).map((c, i) => resolveFile(c, `${key}[${i}]`, baseDir, 'cert'));

const optionalFile = (baseDir: string, kind: FileKind) => (v: unknown, key: string): string =>
  v === null || v === '' ? '' : resolveFile(v, key, baseDir, kind);

const absolutePath = (v: unknown, key: string): string => {
  const s = parseString(v, key).trim();
  if (s !== '' && !isAbsolute(s)) throw new ConfigError(key, `expected an absolute path, got ${describe(v)}`, v);
  return s;
};

// ---------------------------------------------------------------------------
// Sections

function parseMirror(baseDir: string) {
  const schema: SectionSchema<Mutable<RegistryMirror>> = {
    remote: rule('remote', parseHttpUrl),
    insecure: rule('insecure', parseBool),
    certs: rule('certs', certList(baseDir)),
    direct: rule('direct', parseBool),
  };
  return (raw: unknown, key: string): Mutable<RegistryMirror> => {
    const target: Mutable<RegistryMirror> = { remote: DEFAULT_REGISTRY, insecure: false, certs: [], direct: false };
    parseSection(raw, schema, key, target);
    return target;
  };
}

const PROXY_SCHEMA: SectionSchema<Partial<Mutable<ProxyRule>>> = {
  regx: rule('regx', parseRegExp),
  use_https: rule('useHttps', parseBool),
  direct: rule('direct', parseBool),
  redirect: rule('redirect', parseRedirect),
};

/**
 * A proxies rule's `redirect`: the host (and port) a matched request goes to instead, as
 * Dragonfly's `req.URL.Host = rule.Redirect`. Anything else (a scheme, a path) would make a
 * URL such as `http://https:5000/...`, so it is refused here.
 */
function parseRedirect(v: unknown, key: string): string {
  const s = parseString(v, key).trim();
  if (s === '') return s;
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?))(?::(\d{1,5}))?$/.exec(s);
  const badPort = m?.[3] !== undefined && (Number(m[3]) < 1 || Number(m[3]) > 65535);
  if (!m || (m[1] !== undefined && isIP(m[1]) !== 6) || badPort) {
    throw new ConfigError(key, `expected host[:port] (no scheme or path), got ${describe(v)}`, v);
  }
  return s;
}

function parseProxy(raw: unknown, key: string): ProxyRule {
  const t: Partial<Mutable<ProxyRule>> = {};
  if (!isMapping(raw)) throw new ConfigError(key, `expected a mapping with regx, got ${describe(raw)}`, raw);
  parseSection(raw, PROXY_SCHEMA, key, t);
  if (t.regx === undefined) throw new ConfigError(`${key}.regx`, 'required', undefined);
  return { regx: t.regx, useHttps: t.useHttps ?? false, direct: t.direct ?? false, redirect: t.redirect ?? '' };
}

function parseHijack(baseDir: string) {
  const hostSchema: SectionSchema<Partial<Mutable<HijackHost>>> = {
    regx: rule('regx', parseRegExp),
    insecure: rule('insecure', parseBool),
    certs: rule('certs', certList(baseDir)),
  };
  const parseHost = (raw: unknown, key: string): HijackHost => {
    if (!isMapping(raw)) throw new ConfigError(key, `expected a mapping with regx, got ${describe(raw)}`, raw);
    const t: Partial<Mutable<HijackHost>> = {};
    parseSection(raw, hostSchema, key, t);
    if (t.regx === undefined) throw new ConfigError(`${key}.regx`, 'required', undefined);
    return { regx: t.regx, insecure: t.insecure ?? false, certs: t.certs ?? [] };
  };
  interface HijackDraft { cert: string; key: string; hosts: HijackHost[] }
  const schema: SectionSchema<HijackDraft> = {
    cert: rule('cert', optionalFile(baseDir, 'cert')),
    key: rule('key', optionalFile(baseDir, 'key')),
    hosts: rule('hosts', (v, k) => parseList(v, k, parseHost)),
  };
  return (raw: unknown, key: string): HijackHttps | null => {
    if (raw === null || raw === undefined) return null;
    const t: HijackDraft = { cert: '', key: '', hosts: [] };
    parseSection(raw, schema, key, t);
    if ((t.cert === '') !== (t.key === '')) {
      const missing = t.cert === '' ? 'cert' : 'key';
      const other = missing === 'cert' ? 'key' : 'cert';
      throw new ConfigError(`${key}.${missing}`, `required when ${key}.${other} is set`, undefined);
    }
    const enabled = t.cert !== '';
    return { cert: enabled ? t.cert : null, key: enabled ? t.key : null, enabled, hosts: t.hosts };
  };
}

function parseLogConfig(raw: unknown, key: string): Mutable<DfdaemonLogConfig> {
  const t: Mutable<DfdaemonLogConfig> = { path: '', maxSize: 0, maxBackups: 0 };
  parseSection(raw, {
    path: rule('path', parseString),
    maxSize: rule('maxSize', (v, k) => parseInteger(v, k, { min: 0 })),
    maxBackups: rule('maxBackups', (v, k) => parseInteger(v, k, { min: 0 })),
  } satisfies SectionSchema<Mutable<DfdaemonLogConfig>>, key, t);
  return t;
}

function validateNodes(list: string[], key: string): string[] {
  list.forEach((n, i) => parseNodeList(n, `${key}[${i}]`));
  return list;
}

/** Top-level YAML keys (snake_case / camelCase exactly as Dragonfly's yaml tags). */
export function dfdaemonSchema(baseDir: string): SectionSchema<Draft> {
  return {
    registry_mirror: rule('registryMirror', parseMirror(baseDir)),
    proxies: rule('proxies', (v, k) => parseList(v, k, parseProxy)),
    hijack_https: rule('hijackHttps', parseHijack(baseDir)),
    port: rule('port', (v, k) => parsePort(v, k, true)),
    hostIp: rule('hostIp', (v, k) => parseString(v, k).trim()),
    certpem: rule('certpem', optionalFile(baseDir, 'cert')),
    keypem: rule('keypem', optionalFile(baseDir, 'key')),
    verbose: rule('verbose', parseBool),
    maxprocs: rule('maxprocs', (v, k) => parseInteger(v, k, { min: 1 })),
    dfget_flags: rule('dfgetFlags', parseStringList),
    supernodes: rule('supernodes', (v, k) => validateNodes(parseStringList(v, k), k)),
    ratelimit: rule('ratelimit', parseSize),
    cacheLimit: rule('cacheLimit', parseSize),
    maxConcurrentUploads: rule('maxConcurrentUploads', (v, k) => parseInteger(v, k, { min: 1 })),
    workHome: rule('workHome', absolutePath),
    localrepo: rule('localrepo', absolutePath),
    dfpath: rule('dfpath', (v, k) => parseString(v, k).trim()),
    logConfig: rule('logConfig', parseLogConfig),
    localIP: rule('localIP', parseIP),
    listenIP: rule('listenIP', parseIP),
    peerPort: rule('peerPort', (v, k) => parsePort(v, k, true)),
    streamMode: rule('streamMode', parseBool),
  };
}

// ---------------------------------------------------------------------------
// Flags

interface FlagRule extends FlagSpec {
  /** Applies the flag (value already split from argv). */
  readonly apply?: (d: Draft, value: string, key: string, cwd: string) => void;
}

const FLAG_RULES: readonly FlagRule[] = [
  { name: 'config', arg: 'FILE', help: `dfdaemon.yml to read (default ${DEFAULT_DFDAEMON_CONFIG_PATH} when it exists)` },
  { name: 'port', arg: 'N', help: 'proxy port, also serving peers (default 65001); port', apply: (d, v, k) => { d.port = parsePort(v, k, true); } },
  { name: 'registry', arg: 'URL', help: `registry the mirror forwards to (default ${DEFAULT_REGISTRY}); registry_mirror.remote`, apply: (d, v, k) => { d.registryMirror.remote = parseHttpUrl(v, k); } },
  // A shared file's supernodes may be dead where the command line names others: replace, not add.
  {
    name: 'node', arg: 'host[:port][=weight],...', help: "supernodes (repeatable); replace the file's supernodes and dfget_flags' --node",
    apply: (d, v, k) => { (d.cliNodes ??= []).push(...validateNodes(splitComma(v), k)); },
  },
  { name: 'ratelimit', arg: 'RATE', help: "per-download rate and the host's upload budget (default 20M); ratelimit", apply: (d, v, k) => { d.ratelimit = parseSize(v, k); } },
  { name: 'localrepo', arg: 'DIR', help: 'piece cache (default WORKHOME/dfdaemon/data); localrepo', apply: (d, v, k, cwd) => { d.localrepo = resolve(cwd, parseString(v, k, true)); } },
  { name: 'workHome', arg: 'DIR', help: 'working directory (default $HOME/.small-dragonfly); workHome', apply: (d, v, k, cwd) => { d.workHome = resolve(cwd, parseString(v, k, true)); } },
  { name: 'verbose', bool: true, help: 'debug logging; verbose', apply: (d, v, k) => { d.verbose = parseBool(v, k); } },
  { name: 'maxprocs', arg: 'N', help: 'accepted, ignored; maxprocs', apply: (d, v, k) => { d.maxprocs = parseInteger(v, k, { min: 1 }); } },
  { name: 'listen-ip', arg: 'IP', help: 'address the ports bind to (default every interface); listenIP', apply: (d, v, k) => { d.listenIP = parseIP(v, k); } },
  { name: 'hostIp', arg: 'IP', help: 'accepted, ignored as in Dragonfly (localIP sets the address peers reach); hostIp', apply: (d, v, k) => { d.hostIp = parseString(v, k).trim(); } },
  {
    name: 'peerPort', arg: 'N', help: 'separate plain-HTTP port for peers (default 0: the proxy port, or any free one with certpem); peerPort',
    apply: (d, v, k) => { d.peerPort = parsePort(v, k, true); },
  },
  { name: 'streamMode', bool: true, help: 'accepted, ignored (blobs always stream); streamMode', apply: (d, v, k) => { d.streamMode = parseBool(v, k); } },
  { name: 'certpem', arg: 'FILE', help: 'certificate that makes the proxy port speak HTTPS (with --keypem); certpem', apply: (d, v, k, cwd) => { d.certpem = optionalFile(cwd, 'cert')(v, k); } },
  { name: 'keypem', arg: 'FILE', help: "the certificate's private key; keypem", apply: (d, v, k, cwd) => { d.keypem = optionalFile(cwd, 'key')(v, k); } },
  { name: 'dfpath', arg: 'PATH', help: 'accepted, ignored (no external dfget); dfpath', apply: (d, v, k) => { d.dfpath = parseString(v, k).trim(); } },
  // Dragonfly's dfdaemon passed these three to every dfget it ran (`-f`, `--notbs`, `--callsystem`).
  { name: 'urlfilter', arg: "'k1&k2'", help: "query keys left out of task IDs (dfget's -f)", apply: (d, v) => { d.dfgetOverrides.filter = v.split('&').filter((q) => q !== ''); } },
  { name: 'notbs', bool: true, help: "never fall back to the origin (dfget's --notbs)", apply: (d, v, k) => { d.dfgetOverrides.notbs = parseBool(v, k); } },
  { name: 'callsystem', arg: 'NAME', help: 'accepted, ignored', apply: (d, v) => { d.dfgetOverrides.callSystem = v; } },
];
/** Every flag the dfdaemon accepts, with its help line: what `dfdaemon --help` lists. */
export const DFDAEMON_FLAGS: readonly FlagSpec[] = FLAG_RULES;

const splitComma = (v: string): string[] => v.split(',').map((s) => s.trim()).filter((s) => s !== '');

// ---------------------------------------------------------------------------
// Loading

export interface LoadDfdaemonOptions {
  /** YAML file; `--config` in argv overrides it. */
  readonly file?: string;
  readonly argv?: readonly string[];
  /** Used when neither `file` nor `--config` is given and it exists; null disables. */
  readonly defaultFile?: string | null;
  /** For `$HOME` (default workHome). Defaults to process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** Base for relative paths given as flags. Defaults to process.cwd(). */
  readonly cwd?: string;
}

/** Applies a parsed YAML document; relative cert paths resolve against `baseDir`. */
function applyDfdaemonYaml(doc: unknown, baseDir: string, draft: Draft): void {
  if (doc === null || doc === undefined) return;
  if (!isMapping(doc)) throw new ConfigError('', `dfdaemon config: expected a mapping at the top level, got ${describe(doc)}`, doc);
  parseSection(doc, dfdaemonSchema(baseDir), '', draft);
}

export function loadDfdaemonConfig(options: LoadDfdaemonOptions = {}): DfdaemonConfig {
  const cwd = options.cwd ?? process.cwd();
  const tokens = tokenizeFlags(options.argv ?? [], FLAG_RULES);
  const configFlag = tokens.filter((t) => t.name === 'config').at(-1);
  let file: string | null = null;
  if (configFlag !== undefined) {
    if (configFlag.value.trim() === '') throw new ConfigError('--config', 'expected a file path', configFlag.value);
    file = resolve(cwd, configFlag.value);
  } else if (options.file !== undefined) {
    file = resolve(cwd, options.file);
  } else {
    const def = options.defaultFile === undefined ? DEFAULT_DFDAEMON_CONFIG_PATH : options.defaultFile;
    if (def !== null && existsSync(def)) file = def;
  }

  const draft = defaults(options.env ?? process.env);
  if (file !== null) applyDfdaemonYaml(readYamlFile(file, configFlag?.as ?? 'config'), dirname(file), draft);

  const byName = new Map(FLAG_RULES.map((r) => [r.name, r]));
  for (const t of tokens) byName.get(t.name)?.apply?.(draft, t.value, t.as, cwd);

  return finish(draft, file);
}

function finish(d: Draft, file: string | null): DfdaemonConfig {
  if (d.certpem === '' !== (d.keypem === '')) {
    const missing = d.certpem === '' ? 'certpem' : 'keypem';
    throw new ConfigError(missing, `required when ${missing === 'certpem' ? 'keypem' : 'certpem'} is set`, undefined);
  }
  if (!isAbsolute(d.workHome)) throw new ConfigError('workHome', `expected an absolute path, got ${describe(d.workHome)}`, d.workHome);
  const localrepo = d.localrepo === '' ? join(d.workHome, 'dfdaemon', 'data') : d.localrepo;
  if (d.ratelimit <= 0) throw new ConfigError('ratelimit', `expected a positive rate, got ${d.ratelimit}`, d.ratelimit);
  if (d.cacheLimit <= 0) throw new ConfigError('cacheLimit', `expected a positive size, got ${d.cacheLimit}`, d.cacheLimit);

  const dfget: DfgetFlags = { ...parseDfgetFlags(d.dfgetFlags, { keyPrefix: 'dfget_flags' }), ...d.dfgetOverrides };
  const supernodes = d.cliNodes ?? d.supernodes;
  const fromSupernodes = supernodes.flatMap((n, i) => parseNodeList(n, d.cliNodes === null ? `supernodes[${i}]` : '--node'));
  const config: DfdaemonConfig = {
    port: d.port,
    hostIp: d.hostIp,
    localIP: d.localIP,
    listenIP: d.listenIP,
    peerPort: d.peerPort,
    streamMode: d.streamMode,
    registryMirror: d.registryMirror,
    proxies: d.proxies,
    hijackHttps: d.hijackHttps,
    dfgetFlags: d.dfgetFlags,
    dfget,
    supernodes,
    nodes: fromSupernodes.length > 0 ? fromSupernodes : dfget.nodes,
    ratelimit: d.ratelimit,
    cacheLimit: d.cacheLimit,
    maxConcurrentUploads: d.maxConcurrentUploads,
    workHome: d.workHome,
    localrepo,
    dfpath: d.dfpath,
    verbose: d.verbose,
    maxprocs: d.maxprocs,
    certpem: d.certpem,
    keypem: d.keypem,
    logConfig: d.logConfig,
    configFile: file,
    ignored: ignoredSettings(d),
  };
  return deepFreeze(config);
}

/**
 * dfget flags daemon.ts reads (add one here when it starts reading it). It warns on its own when
 * ratelimit overrides -s and --totallimit; `--dfdaemon` only says what is true of every download.
 */
const DFGET_FLAGS_USED: ReadonlySet<string> = new Set(['node', 'filter', 'locallimit', 'totallimit', 'notbs', 'expiretime', 'dfdaemon']);
const DFGET_BOOL_FLAGS: ReadonlySet<string> = new Set(['insecure', 'verbose', 'showbar', 'console']);
const DFGET_FLAG_HINTS: Readonly<Record<string, string>> = {
  url: 'the daemon sets it per request',
  output: 'the daemon sets it per request',
  md5: 'the daemon sets it per request',
  identifier: 'the daemon sets it per request',
  header: "each request's own headers are forwarded",
  insecure: 'set insecure under registry_mirror or hijack_https.hosts',
  cacerts: 'set certs under registry_mirror or hijack_https.hosts',
  pattern: 'downloads always go through the supernode (p2p)',
  ip: 'set localIP',
  port: 'peers are served on port, or peerPort',
  home: 'set localrepo',
  verbose: 'set verbose',
};

/**
 * What the operator asked for and will not get. A value equal to the default asks for nothing
 * (`streamMode: false`), so only other values are reported; files still load, as Dragonfly's do.
 */
function ignoredSettings(d: Draft): string[] {
  const out: string[] = [];
  if (d.streamMode) out.push('streamMode: ignored; blobs always stream to Docker as pieces arrive, and peers are served in-process');
  if (d.maxprocs !== DEFAULT_MAXPROCS) out.push('maxprocs: ignored; Node.js has no GOMAXPROCS to set');
  out.push(...ignoredLogConfig(d.logConfig));
  if (d.dfpath !== '') out.push('dfpath: ignored; dfdaemon downloads in-process and runs no dfget');
  if (d.hostIp !== DEFAULT_HOST_IP) out.push('hostIp: ignored (as in Dragonfly); localIP sets the address peers reach');
  if (d.dfgetOverrides.callSystem !== undefined) out.push('--callsystem: ignored; dfdaemon does not use it');
  const seen = new Set<string>();
  for (const t of tokenizeDfgetFlags(d.dfgetFlags, 'dfget_flags')) {
    if (DFGET_FLAGS_USED.has(t.name) || seen.has(t.name)) continue;
    if (DFGET_BOOL_FLAGS.has(t.name) && !parseBool(t.value, `dfget_flags ${t.as}`)) continue;
    seen.add(t.name);
    out.push(`dfget_flags ${t.as}: ignored; ${DFGET_FLAG_HINTS[t.name] ?? 'dfdaemon does not use it'}`);
  }
  return out;
}
