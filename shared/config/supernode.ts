/**
 * supernode configuration: Dragonfly 1.0.6's `supernode.yml` (supernode/config/config.go)
 * plus the supernode command line. Precedence: defaults < YAML file < flags.
 * Sizes are bytes, durations milliseconds. The result is deeply frozen.
 *
 * To add a key, add one line to the section's schema table (and a field to the
 * interface). To add a top-level section (e.g. `preheat:`), add one entry to TOP_LEVEL.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../errors.js';
import { PREHEAT_DEFAULTS, parsePreheatSection, type PreheatConfig } from './preheat.js';
import {
  deepFreeze, describe, isMapping, parseBool, parseDuration, parseEnum, parseInteger, parseIP,
  parsePort, parsePositiveDuration, parsePositiveInt, parseSection, parseSize, parseString, rule, unknownKey, type SectionSchema,
} from '../units.js';
import { tokenizeFlags, type FlagSpec } from './dfget-flags.js';

export type CdnPattern = 'local' | 'source';

export interface SupernodeLogConfig {
  /** Log file path ('' = the default under homeDir). */
  readonly path: string;
  /** MB before rotation (0 = logger default). */
  readonly maxSize: number;
  readonly maxBackups: number;
}

/**
 * Both daemons accept Dragonfly's logConfig and log to standard output: a logConfig that asks for
 * anything (a path, rotation) is reported as ignored, the default one is not.
 */
export function ignoredLogConfig(lc: { path: string; maxSize: number; maxBackups: number }): string[] {
  return lc.path !== '' || lc.maxSize !== 0 || lc.maxBackups !== 0 ? ['logConfig: ignored; logs go to standard output, unrotated'] : [];
}

export interface SupernodeConfig {
  /** API port. 0 = an ephemeral port (tests). */
  readonly listenPort: number;
  /** Port peers fetch CDN pieces from. 0 = an ephemeral port (tests). */
  readonly downloadPort: number;
  readonly homeDir: string;
  /** IP advertised to peers; '' = the first non-loopback address. */
  readonly advertiseIP: string;
  /** Address both ports bind to ('' = every interface). Ours, not Dragonfly's. */
  readonly listenIP: string;
  readonly cdnPattern: CdnPattern;
  /** Parsed, unused by Dragonfly 1.x (kept for compatibility). */
  readonly schedulerCorePoolSize: number;
  readonly peerUpLimit: number;
  readonly peerDownLimit: number;
  readonly eliminationLimit: number;
  readonly failureCountLimit: number;
  /** Ours: hops a piece may be passed on while it still arrives (cut-through); 0 = off. */
  readonly cutThroughDepth: number;
  /** Bytes/s. Parsed, unused by Dragonfly 1.x. */
  readonly linkLimit: number;
  /** Bytes/s. */
  readonly systemReservedBandwidth: number;
  /** Bytes/s; the CDN budget is maxBandwidth - systemReservedBandwidth. */
  readonly maxBandwidth: number;
  readonly enableProfiler: boolean;
  readonly debug: boolean;
  /** ms a failed (404) source URL is remembered. */
  readonly failAccessInterval: number;
  readonly gcInitialDelay: number;
  readonly gcMetaInterval: number;
  readonly taskExpireTime: number;
  /** ms without heartbeat before a peer expires (Dragonfly: parsed, unused). */
  readonly peerExpireTime: number;
  readonly peerGCDelay: number;
  readonly gcDiskInterval: number;
  /** Bytes of free disk above which disk GC does nothing. */
  readonly youngGCThreshold: number;
  /** Bytes of free disk at or below which every idle task is a GC candidate. */
  readonly fullGCThreshold: number;
  /** ms (YAML key `IntervalThreshold`). */
  readonly intervalThreshold: number;
  /** Tenths of the candidates removed per disk GC run (1-10). */
  readonly cleanRatio: number;
  readonly maxSeedPerObject: number;
  /** Ours: origin downloads the CDN runs at once; the others wait for a slot. */
  readonly maxSourceFetches: number;
  /**
   * Ours: tasks the supernode keeps in memory. Past it, a registration for a new task is
   * answered HTTP 429 (TOO_MANY_REQUESTS), and dfget and our dfdaemon fetch from the origin.
   */
  readonly maxTasks: number;
  readonly logConfig: SupernodeLogConfig;
  /** Top-level `preheat:` section (ours). */
  readonly preheat: PreheatConfig;
  /** The YAML file that was loaded, or null for none. */
  readonly configFile: string | null;
  /** Settings given a value this supernode does not act on, each with the reason; to warn about at startup. */
  readonly ignored: readonly string[];
}

const MB = 1024 * 1024;
const GB = 1024 * MB;
const MIN = 60_000;

export const SUPERNODE_DEFAULTS: SupernodeConfig = deepFreeze({
  listenPort: 8002,
  downloadPort: 8001,
  homeDir: '/home/admin/supernode',
  advertiseIP: '',
  listenIP: '',
  cdnPattern: 'local',
  schedulerCorePoolSize: 10,
  peerUpLimit: 5,
  peerDownLimit: 4,
  eliminationLimit: 5,
  failureCountLimit: 5,
  cutThroughDepth: 3,
  linkLimit: 20 * MB,
  systemReservedBandwidth: 20 * MB,
  maxBandwidth: 200 * MB,
  enableProfiler: false,
  debug: false,
  failAccessInterval: 3 * MIN,
  gcInitialDelay: 6_000,
  gcMetaInterval: 2 * MIN,
  taskExpireTime: 3 * MIN,
  peerExpireTime: 2 * MIN,
  peerGCDelay: 3 * MIN,
  gcDiskInterval: 15_000,
  youngGCThreshold: 100 * GB,
  fullGCThreshold: 5 * GB,
  intervalThreshold: 2 * 60 * MIN,
  cleanRatio: 1,
  maxSeedPerObject: 64,
  // Measured with bin/supernode under a registration burst: ~12 KB a task with no headers, ~35
  // KB with 16 KB of them (the cap); 600 tasks with 16 KB headers peaked at 94 MB RSS.
  maxSourceFetches: 16,
  maxTasks: 500,
  logConfig: { path: '', maxSize: 0, maxBackups: 0 },
  preheat: PREHEAT_DEFAULTS,
  configFile: null,
  ignored: [],
} satisfies SupernodeConfig);

export const DEFAULT_SUPERNODE_CONFIG_PATH = '/etc/dragonfly/supernode.yml';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type Draft = Mutable<SupernodeConfig>;

const port0 = (v: unknown, k: string): number => parsePort(v, k, true);
const nonNegDuration = parseDuration;
const ratio = (v: unknown, k: string): number => parseInteger(v, k, { min: 1, max: 10 });
const homeDir = (v: unknown, k: string): string => parseString(v, k, true);

const LOG_SCHEMA: SectionSchema<Mutable<SupernodeLogConfig>> = {
  path: rule('path', parseString),
  maxSize: rule('maxSize', (v, k) => parseInteger(v, k, { min: 0 })),
  maxBackups: rule('maxBackups', (v, k) => parseInteger(v, k, { min: 0 })),
};

function parseLogConfig(raw: unknown, key: string): SupernodeLogConfig {
  const target: Mutable<SupernodeLogConfig> = { ...SUPERNODE_DEFAULTS.logConfig };
  parseSection(raw, LOG_SCHEMA, key, target);
  return target;
}

/** `base:` keys, spelled as in Dragonfly's yaml tags. */
export const BASE_SCHEMA: SectionSchema<Draft> = {
  cdnPattern: rule('cdnPattern', (v, k) => parseEnum(v, k, ['local', 'source'] as const)),
  listenPort: rule('listenPort', port0),
  downloadPort: rule('downloadPort', port0),
  homeDir: rule('homeDir', homeDir),
  advertiseIP: rule('advertiseIP', parseIP),
  listenIP: rule('listenIP', parseIP),
  schedulerCorePoolSize: rule('schedulerCorePoolSize', parsePositiveInt),
  peerUpLimit: rule('peerUpLimit', parsePositiveInt),
  peerDownLimit: rule('peerDownLimit', parsePositiveInt),
  eliminationLimit: rule('eliminationLimit', parsePositiveInt),
  failureCountLimit: rule('failureCountLimit', parsePositiveInt),
  cutThroughDepth: rule('cutThroughDepth', (v, k) => parseInteger(v, k, { min: 0, max: 16 })),
  linkLimit: rule('linkLimit', parseSize),
  systemReservedBandwidth: rule('systemReservedBandwidth', parseSize),
  maxBandwidth: rule('maxBandwidth', parseSize),
  enableProfiler: rule('enableProfiler', parseBool),
  debug: rule('debug', parseBool),
  failAccessInterval: rule('failAccessInterval', nonNegDuration),
  gcInitialDelay: rule('gcInitialDelay', nonNegDuration),
  gcMetaInterval: rule('gcMetaInterval', parsePositiveDuration),
  taskExpireTime: rule('taskExpireTime', nonNegDuration),
  peerExpireTime: rule('peerExpireTime', nonNegDuration),
  peerGCDelay: rule('peerGCDelay', nonNegDuration),
  gcDiskInterval: rule('gcDiskInterval', parsePositiveDuration),
  youngGCThreshold: rule('youngGCThreshold', parseSize),
  fullGCThreshold: rule('fullGCThreshold', parseSize),
  IntervalThreshold: rule('intervalThreshold', nonNegDuration),
  intervalThreshold: rule('intervalThreshold', nonNegDuration),
  cleanRatio: rule('cleanRatio', ratio),
  cleanratio: rule('cleanRatio', ratio),
  maxSeedPerObject: rule('maxSeedPerObject', parsePositiveInt),
  maxSourceFetches: rule('maxSourceFetches', parsePositiveInt),
  maxTasks: rule('maxTasks', parsePositiveInt),
  logConfig: rule('logConfig', parseLogConfig),
};

/** Accepted for compatibility with Dragonfly's config files; a non-empty one is reported as ignored. */
const ignoredMapping = (why: string) => (raw: unknown, key: string, draft: Draft): void => {
  if (raw !== null && raw !== undefined && !isMapping(raw)) {
    throw new ConfigError(key, `expected a mapping, got ${describe(raw)}`, raw);
  }
  if (isMapping(raw) && Object.keys(raw).length > 0) draft.ignored = [...draft.ignored, `${key}: ignored; ${why}`];
};

/** Top-level sections: name -> how to apply it to the draft; `baseDir` is the file's directory. */
const TOP_LEVEL: Readonly<Record<string, (raw: unknown, key: string, draft: Draft, baseDir: string) => void>> = {
  base: (raw, key, draft) => parseSection(raw, BASE_SCHEMA, key, draft),
  plugins: ignoredMapping('the supernode has no plugins'),
  storages: ignoredMapping('pieces are stored under base.homeDir'),
  preheat: (raw, key, draft, baseDir) => {
    draft.preheat = parsePreheatSection(raw, key, baseDir);
  },
};

/**
 * What the operator asked for and will not get. A value equal to the default asks for nothing
 * (`enableProfiler: false`), so only other values are reported; files still load, as Dragonfly's do.
 */
function ignoredSettings(c: SupernodeConfig): string[] {
  const d = SUPERNODE_DEFAULTS;
  const out: string[] = [];
  if (c.cdnPattern === 'source') out.push('cdnPattern: source is not supported; the CDN always caches');
  if (c.schedulerCorePoolSize !== d.schedulerCorePoolSize) out.push('schedulerCorePoolSize: ignored (unused in Dragonfly 1.x too)');
  if (c.linkLimit !== d.linkLimit) out.push('linkLimit: ignored (unused in Dragonfly 1.x too)');
  if (c.enableProfiler) out.push('enableProfiler: ignored; the supernode has no profiler');
  if (c.maxSeedPerObject !== d.maxSeedPerObject) out.push('maxSeedPerObject: ignored; the supernode does not use it');
  out.push(...ignoredLogConfig(c.logConfig));
  return out;
}

/**
 * Flags: name -> the base key they set (parsed by that key's rule). Dragonfly 1.0.x spells
 * some differently from ours (`--up-limit`, `--pool-size`); both are kept so its
 * docker-compose `command:` lines run unchanged. A flag without a field is read elsewhere.
 * `help` is its line in --help, which says which key it sets.
 */
type FlagEntry = { readonly bool?: boolean; readonly short?: string; readonly field?: string; readonly arg?: string; readonly help: string };
const FLAGS: Readonly<Record<string, FlagEntry>> = {
  config: { arg: 'FILE', help: 'supernode.yml to read (default /etc/dragonfly/supernode.yml when it exists)' },
  port: { field: 'listenPort', arg: 'N', help: 'API port (default 8002; 0: any free port)' },
  'download-port': { field: 'downloadPort', arg: 'N', help: 'port peers fetch CDN pieces from (default 8001)' },
  'home-dir': { field: 'homeDir', arg: 'DIR', help: 'pieces and metadata (default /home/admin/supernode)' },
  'advertise-ip': { field: 'advertiseIP', arg: 'IP', help: "the supernode's address given to peers (default: the first non-loopback one)" },
  'listen-ip': { field: 'listenIP', arg: 'IP', help: 'address both ports bind to (default every interface)' },
  'cdn-pattern': { field: 'cdnPattern', arg: 'local|source', help: 'only local is supported' },
  'max-bandwidth': { field: 'maxBandwidth', arg: 'RATE', help: 'bandwidth the supernode may use (default 200M)' },
  'system-bandwidth': { field: 'systemReservedBandwidth', arg: 'RATE', help: 'bandwidth kept for the system (default 20M)' },
  'peer-up-limit': { field: 'peerUpLimit', arg: 'N', help: 'pieces a peer serves at once, over all its tasks (default 5)' },
  'up-limit': { field: 'peerUpLimit', arg: 'N', help: "Dragonfly 1.0's name for --peer-up-limit" },
  'peer-down-limit': { field: 'peerDownLimit', arg: 'N', help: 'pieces a peer fetches at once (default 4)' },
  'down-limit': { field: 'peerDownLimit', arg: 'N', help: "Dragonfly 1.0's name for --peer-down-limit" },
  'pool-size': { field: 'schedulerCorePoolSize', arg: 'N', help: 'accepted, ignored (unused in Dragonfly 1.x too)' },
  'fail-access-interval': { field: 'failAccessInterval', arg: 'DURATION', help: 'how long an origin 404 is remembered (default 3m)' },
  'gc-initial-delay': { field: 'gcInitialDelay', arg: 'DURATION', help: 'delay before the first GC (default 6s)' },
  'gc-meta-interval': { field: 'gcMetaInterval', arg: 'DURATION', help: 'interval of meta GC (default 2m)' },
  'task-expire-time': { field: 'taskExpireTime', arg: 'DURATION', help: 'idle time after which a task may be collected (default 3m)' },
  'peer-gc-delay': { field: 'peerGCDelay', arg: 'DURATION', help: 'delay before a departed peer is forgotten (default 3m)' },
  debug: { bool: true, short: 'D', field: 'debug', help: 'debug logging' },
  profiler: { bool: true, field: 'enableProfiler', help: 'accepted, ignored (no profiler)' },
};
const FLAG_SPECS: readonly FlagSpec[] = Object.entries(FLAGS).map(([name, f]) => ({
  name,
  bool: f.bool,
  short: f.short,
  arg: f.arg,
  help: f.field === undefined ? f.help : `${f.help}; base.${f.field}`,
}));
/** Every flag the supernode accepts, with its help line: what `supernode --help` lists. */
export const SUPERNODE_FLAGS: readonly FlagSpec[] = FLAG_SPECS;

/**
 * Applies a parsed YAML document to a draft (exported for tests and for callers that
 * already hold YAML text). `source` names the document in error messages.
 */
export function applySupernodeYaml(doc: unknown, draft: Draft, baseDir: string = process.cwd()): void {
  if (doc === null || doc === undefined) return;
  if (!isMapping(doc)) throw new ConfigError('', `supernode config: expected a mapping at the top level, got ${describe(doc)}`, doc);
  for (const [k, v] of Object.entries(doc)) {
    const apply = Object.hasOwn(TOP_LEVEL, k) ? TOP_LEVEL[k] : undefined;
    if (apply === undefined) throw unknownKey(k, k, Object.keys(TOP_LEVEL), v);
    apply(v, k, draft, baseDir);
  }
}

export function validateSupernodeConfig(c: SupernodeConfig): void {
  if (c.maxBandwidth <= c.systemReservedBandwidth) {
    throw new ConfigError('base.maxBandwidth',
      `must be greater than base.systemReservedBandwidth (${c.systemReservedBandwidth} bytes), got ${c.maxBandwidth} bytes`,
      c.maxBandwidth);
  }
  if (c.fullGCThreshold > c.youngGCThreshold) {
    throw new ConfigError('base.fullGCThreshold',
      `must not exceed base.youngGCThreshold (${c.youngGCThreshold} bytes), got ${c.fullGCThreshold} bytes`,
      c.fullGCThreshold);
  }
  if (c.listenPort !== 0 && c.listenPort === c.downloadPort) {
    throw new ConfigError('base.downloadPort', `must differ from base.listenPort (${c.listenPort})`, c.downloadPort);
  }
}

export interface LoadSupernodeOptions {
  /** YAML file; `--config` in argv overrides it. */
  readonly file?: string;
  readonly argv?: readonly string[];
  /** Used when neither `file` nor `--config` is given and it exists; null disables. */
  readonly defaultFile?: string | null;
}

/** Reads a YAML file into a plain value, turning I/O and syntax errors into ConfigErrors. */
export function readYamlFile(file: string, key: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(key, `cannot read ${file}: ${(err as Error).message}`, file, { cause: err });
  }
  try {
    return parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw new ConfigError(key, `invalid YAML in ${file}: ${(err as Error).message}`, file, { cause: err });
  }
}

export function loadSupernodeConfig(options: LoadSupernodeOptions = {}): SupernodeConfig {
  const tokens = tokenizeFlags(options.argv ?? [], FLAG_SPECS);
  const configFlag = tokens.filter((t) => t.name === 'config').at(-1);
  let file: string | null = null;
  if (configFlag !== undefined) {
    if (configFlag.value.trim() === '') throw new ConfigError('--config', 'expected a file path', configFlag.value);
    file = resolve(configFlag.value);
  } else if (options.file !== undefined) {
    file = resolve(options.file);
  } else {
    const def = options.defaultFile === undefined ? DEFAULT_SUPERNODE_CONFIG_PATH : options.defaultFile;
    if (def !== null && existsSync(def)) file = def;
  }

  const draft: Draft = { ...SUPERNODE_DEFAULTS, logConfig: { ...SUPERNODE_DEFAULTS.logConfig }, configFile: file };
  if (file !== null) applySupernodeYaml(readYamlFile(file, configFlag?.as ?? 'config'), draft, dirname(file));

  for (const t of tokens) {
    const field = FLAGS[t.name].field;
    if (field === undefined) continue;
    const r = BASE_SCHEMA[field];
    const value = FLAGS[t.name].bool === true ? parseBool(t.value, t.as) : t.value;
    (draft as Record<string, unknown>)[r.field] = r.parse(value, t.as);
  }

  validateSupernodeConfig(draft);
  draft.ignored = [...draft.ignored, ...ignoredSettings(draft)];
  return deepFreeze(draft);
}
