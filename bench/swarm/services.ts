// The processes of one run, each started inside its host's namespace. `ip netns exec` and the
// bin/ wrappers both exec, so the PID we track is the daemon itself: /proc stats and signals
// reach the right process and nothing else.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { envWithoutProxy, spawnTracked, waitForPort, type Tracked } from '../../test/fixtures/proc.js';
import { REGISTRY_BIN } from '../../test/fixtures/registry.js';
import { inNs, type Host } from './net.js';

export const REGISTRY_PORT = 5000;
export const SN_PORT = 8002;
export const SN_DOWNLOAD_PORT = 8001;
export const DFDAEMON_PORT = 65001;

export interface Service {
  name: string;
  host: Host;
  proc: Tracked;
  /** Trace file written by trace.js inside the process (project daemons only). */
  traceFile?: string;
  /** Epoch ms just before the spawn, to cut start-up out of its CPU profile. */
  startedAt: number;
}

async function startIn(host: Host, name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv, logDir: string, port: number): Promise<Tracked> {
  const [c, a] = inNs(host.ns, cmd, args);
  const proc = await spawnTracked(c, a, { env, logDir, name, stopTimeoutMs: 10_000, keepLog: true });
  try {
    await Promise.race([
      waitForPort(host.ip, port, { timeoutMs: 30_000 }),
      proc.exited.then((e) => {
        throw new Error(`${name} exited early (${e.code ?? e.signal}): ${proc.readLog().slice(-1500)}`);
      }),
    ]);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return proc;
}

/** Docker Distribution as in test/fixtures/registry.ts, but bound inside a namespace. */
export async function startRegistry(host: Host, dir: string, proxy?: string): Promise<Service> {
  const data = join(dir, 'data');
  await mkdir(data, { recursive: true });
  const config = {
    version: 0.1,
    log: { level: 'info', formatter: 'json', accesslog: { disabled: false } },
    storage: { filesystem: { rootdirectory: data }, delete: { enabled: true }, maintenance: { uploadpurging: { enabled: false } } },
    http: { addr: `${host.ip}:${REGISTRY_PORT}`, secret: randomBytes(16).toString('hex') },
    health: { storagedriver: { enabled: false } },
    ...(proxy ? { proxy: { remoteurl: proxy } } : {}),
  };
  const file = join(dir, 'config.yml');
  await writeFile(file, stringify(config));
  const name = proxy ? 'pull-through' : 'origin';
  const startedAt = Date.now();
  const proc = await startIn(host, name, REGISTRY_BIN, ['serve', file], envWithoutProxy(), dir, REGISTRY_PORT);
  return { name, host, proc, startedAt };
}

/** Bytes of blob GET responses the registry logged, for a second opinion on interface counters. */
export function registryBlobBytes(logFile: string): number {
  let sum = 0;
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    if (!line.startsWith('{') || !line.includes('response completed')) continue;
    try {
      const r = JSON.parse(line) as Record<string, unknown>;
      if (r['http.request.method'] === 'GET' && /\/blobs\/sha256:/.test(String(r['http.request.uri']))) sum += Number(r['http.response.written'] ?? 0);
    } catch {
      /* a partial line */
    }
  }
  return sum;
}

export interface DaemonOpts {
  /** Root of the code under test (a snapshot of the build). */
  root: string;
  dir: string;
  /** Absolute path of dist/bench/swarm/trace.js, preloaded with --import; '' for none. */
  tracer: string;
  /** Directory for --cpu-prof output, or '' for no profile. */
  cpuProfDir: string;
  nodeOptions?: string;
  /** Extra `base:` settings for the supernode's config file. */
  supernodeBase?: Record<string, string | number>;
  /** Extra top-level settings for each dfdaemon.yml. */
  dfdaemonSet?: Record<string, string | number | boolean>;
  env?: Record<string, string>;
}

function daemonEnv(o: DaemonOpts, traceFile: string): NodeJS.ProcessEnv {
  const opts: string[] = [];
  if (o.tracer) opts.push(`--import=${o.tracer}`);
  if (o.nodeOptions) opts.push(o.nodeOptions);
  const env = envWithoutProxy();
  delete env.NODE_OPTIONS;
  return { ...env, ...o.env, NODE_OPTIONS: opts.join(' '), DFB_TRACE_FILE: traceFile };
}

/**
 * The bin/ wrapper to start, as is, or (to profile) a copy that adds --cpu-prof to its node
 * command line, since node refuses --cpu-prof in NODE_OPTIONS and the wrapper's own flags
 * (e.g. --max-semi-space-size) must stay.
 */
async function launcher(o: DaemonOpts, bin: 'supernode' | 'dfdaemon'): Promise<string> {
  const path = join(o.root, 'bin', bin);
  if (!o.cpuProfDir) return path;
  const text = readFileSync(path, 'utf8');
  if (!/exec node /.test(text)) throw new Error(`${path}: no "exec node" line to add --cpu-prof to`);
  const prof = join(o.dir, `${bin}-prof`);
  await writeFile(prof, text.replace('exec node ', `exec node --cpu-prof --cpu-prof-dir=${o.cpuProfDir} `).replaceAll('$here/..', o.root), { mode: 0o755 });
  return prof;
}

export async function startSupernode(host: Host, o: DaemonOpts): Promise<Service> {
  const home = join(o.dir, 'home');
  const cfg = join(o.dir, 'supernode.yml');
  await mkdir(home, { recursive: true });
  // Defaults are Dragonfly's; the file exists so /etc/dragonfly/supernode.yml is never read.
  await writeFile(cfg, stringify({ base: { debug: false, ...o.supernodeBase } }));
  const traceFile = join(o.dir, 'trace.jsonl');
  const args = ['--config', cfg, '--listen-ip', host.ip, '--port', String(SN_PORT), '--download-port', String(SN_DOWNLOAD_PORT), '--home-dir', home];
  const bin = await launcher(o, 'supernode');
  const startedAt = Date.now();
  const proc = await startIn(host, 'supernode', bin, args, daemonEnv(o, traceFile), o.dir, SN_PORT);
  return { name: 'supernode', host, proc, traceFile, startedAt };
}

export async function startDfdaemon(host: Host, supernode: Host, o: DaemonOpts): Promise<Service> {
  const cfg = join(o.dir, 'dfdaemon.yml');
  await mkdir(o.dir, { recursive: true });
  await writeFile(
    cfg,
    stringify({
      port: DFDAEMON_PORT,
      listenIP: host.ip,
      workHome: join(o.dir, 'work'),
      dfget_flags: ['--node', `${supernode.ip}:${SN_PORT}`, '-f', 'Expires&Signature'],
      proxies: [{ regx: 'blobs/sha256.*' }],
      // The default per-download limit (20 MiB/s) would cap a host below its link otherwise.
      ratelimit: '1G',
      ...o.dfdaemonSet,
    }),
  );
  const traceFile = join(o.dir, 'trace.jsonl');
  const name = `dfdaemon-${host.ns}`;
  const bin = await launcher(o, 'dfdaemon');
  const startedAt = Date.now();
  const proc = await startIn(host, name, bin, ['--config', cfg], daemonEnv(o, traceFile), o.dir, DFDAEMON_PORT);
  return { name, host, proc, traceFile, startedAt };
}

export interface ProcStats {
  name: string;
  pid: number;
  startedAt?: number;
  peakRssMB: number;
  cpuSec: number;
}

const CLK_TCK = 100;

/** VmHWM and utime+stime, read while the process is still alive (the caller stops it after). */
export function procStats(name: string, pid: number, startedAt?: number): ProcStats {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const hwm = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of stat(5); f[0] is field 3.
  const ticks = Number(f[11]) + Number(f[12]);
  return { name, pid, startedAt, peakRssMB: +(hwm / 1024).toFixed(1), cpuSec: ticks / CLK_TCK };
}
