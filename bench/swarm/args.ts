import type { Mode } from './run.js';

export interface Args {
  ns: number[];
  images: ('small' | 'large')[];
  modes: Mode[];
  rate: string;
  rateBps: number;
  /** The origin host's link, when it should differ from every other (a registry far away). */
  originRate: string;
  trace: boolean;
  profile: boolean;
  out: string;
  timeoutFactor: number;
  cleanLeftovers: boolean;
  /** A git revision to build the daemons from; undefined = the current dist/. */
  code?: string;
  /** Keep each run's logs and traces under this directory. */
  keep?: string;
  /** Max seconds to wait before each run for other sessions' CPU use to drop. */
  quietWaitS: number;
  /** Extra attempts for runs disturbed by other sessions' CPU use. */
  retries: number;
  /** Extra NODE_OPTIONS for the daemons (e.g. --max-semi-space-size=1), for experiments. */
  nodeOptions: string;
  /** Patches applied on top of --code before building: prototypes of proposed changes. */
  patches: string[];
  /** Only rebuild <out>.md and the chart from <out>.jsonl. */
  reportOnly: boolean;
  /** Extra supernode `base:` settings (KEY=VALUE,...), e.g. peerUpLimit=2, for experiments. */
  supernodeBase: Record<string, string | number>;
  /** Run direct and pull-through only up to this N (they do not depend on the project's code). */
  baselineMaxN: number;
  /** Extra top-level dfdaemon.yml settings (KEY=VALUE,...), e.g. prefetch=true. */
  dfdaemonSet: Record<string, string | number | boolean>;
  /** Extra environment for the daemons (KEY=VALUE,...), e.g. MALLOC_ARENA_MAX=2, for experiments. */
  daemonEnv: Record<string, string>;
  /**
   * skopeo's destination transport. dir: writes one blob at a time (containers/image has no
   * thread-safe PutBlob for it); oci: copies layers concurrently, as Docker pulls them.
   */
  dest: 'dir' | 'oci';
  /**
   * Before each P2P run, every host pulls a small other image through its fresh daemons, so the
   * measured pull meets daemons that have run their code before, as long-running ones have.
   */
  warmUp: boolean;
}

const USAGE = `usage: npm run bench:swarm -- [--n 1,4,8,16] [--image small|large|both] [--modes direct,proxy,p2p]
  [--rate 100mbit] [--origin-rate 25mbit] [--no-trace] [--profile] [--out bench/results/swarm] [--timeout-factor 2.5] [--clean-leftovers] [--code <git rev>] [--keep DIR] [--quiet-wait 120] [--retries 2]
  [--node-options '...'] [--patch FILE]... (--patch needs --code)
  [--supernode-base peerUpLimit=2,...] [--dfdaemon-set prefetch=true,...] [--baseline-max-n 1] [--daemon-env K=V,...] [--dest dir|oci] [--warm-up]
  [--report-only]   rebuild <out>.md and <out>-chart.svg from <out>.jsonl`;

/** tc's rate units are decimal (mbit = 10^6 bit/s), and so are ours. */
/** `KEY=VALUE,...` for a config file: word keys, digits as numbers, the rest through `other`. */
function settings<T>(flag: string, list: string, other: (val: string) => T): Record<string, number | T> {
  const out: Record<string, number | T> = {};
  for (const kv of list.split(',')) {
    const [key, val] = kv.split('=');
    if (!/^\w+$/.test(key ?? '') || val === undefined) throw new Error(`${flag}: expected KEY=VALUE, got ${kv}`);
    out[key] = /^\d+$/.test(val) ? Number(val) : other(val);
  }
  return out;
}

export function parseRate(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(k|m|g)?bit$/i.exec(s);
  if (!m) throw new Error(`--rate: expected e.g. 100mbit, got ${s}`);
  return Number(m[1]) * { '': 1, k: 1e3, m: 1e6, g: 1e9 }[(m[2] ?? '').toLowerCase() as '' | 'k' | 'm' | 'g'];
}

export function parseArgs(argv: string[]): Args {
  const a: Args = {
    ns: [1, 4, 8, 16], images: ['small', 'large'], modes: ['direct', 'proxy', 'p2p'], rate: '100mbit', rateBps: 1e8, originRate: '',
    trace: true, profile: false, out: 'bench/results/swarm', timeoutFactor: 2.5, cleanLeftovers: false, quietWaitS: 120, retries: 2, nodeOptions: '', patches: [], reportOnly: false, supernodeBase: {}, dfdaemonSet: {}, baselineMaxN: Infinity, daemonEnv: {}, dest: 'dir', warmUp: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value\n${USAGE}`);
      return x;
    };
    if (k === '--n') {
      a.ns = v().split(',').map(Number);
      if (a.ns.some((n) => !Number.isInteger(n) || n < 1 || n > 200)) throw new Error('--n: integers 1..200');
    } else if (k === '--image') {
      const x = v();
      if (x !== 'small' && x !== 'large' && x !== 'both') throw new Error('--image: small, large or both');
      a.images = x === 'both' ? ['small', 'large'] : [x];
    } else if (k === '--modes') {
      a.modes = v().split(',') as Mode[];
      if (a.modes.some((m) => !['direct', 'proxy', 'p2p'].includes(m))) throw new Error('--modes: direct, proxy, p2p');
    } else if (k === '--origin-rate') {
      a.originRate = v();
      parseRate(a.originRate);
    } else if (k === '--rate') {
      a.rate = v();
      a.rateBps = parseRate(a.rate);
    } else if (k === '--no-trace') a.trace = false;
    else if (k === '--profile') a.profile = true;
    else if (k === '--out') a.out = v();
    else if (k === '--timeout-factor') a.timeoutFactor = Number(v());
    else if (k === '--clean-leftovers') a.cleanLeftovers = true;
    else if (k === '--code') a.code = v();
    else if (k === '--keep') a.keep = v();
    else if (k === '--quiet-wait') a.quietWaitS = Number(v());
    else if (k === '--retries') a.retries = Number(v());
    else if (k === '--node-options') a.nodeOptions = v();
    else if (k === '--patch') a.patches.push(v());
    else if (k === '--report-only') a.reportOnly = true;
    else if (k === '--baseline-max-n') a.baselineMaxN = Number(v());
    else if (k === '--warm-up') a.warmUp = true;
    else if (k === '--dest') {
      const x = v();
      if (x !== 'dir' && x !== 'oci') throw new Error('--dest: dir or oci');
      a.dest = x;
    }
    else if (k === '--daemon-env') {
      for (const kv of v().split(',')) {
        const i = kv.indexOf('=');
        if (i < 1) throw new Error(`--daemon-env: expected KEY=VALUE, got ${kv}`);
        a.daemonEnv[kv.slice(0, i)] = kv.slice(i + 1);
      }
    }
    else if (k === '--dfdaemon-set') Object.assign(a.dfdaemonSet, settings(k, v(), (val) => (val === 'true' ? true : val === 'false' ? false : val)));
    else if (k === '--supernode-base') Object.assign(a.supernodeBase, settings(k, v(), (val) => val));
    else throw new Error(`unknown argument ${k}\n${USAGE}`);
  }
  if (a.patches.length > 0 && a.code === undefined) throw new Error('--patch applies to a --code revision');
  return a;
}
