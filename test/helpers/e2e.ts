// Shared pieces of the end-to-end tests: tool checks, loopback addresses, cleanup stacks, seed
// files with placeholders substituted, and our daemons started from ./bin as real processes.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { freePort, spawnTracked, waitFor, type Tracked } from '../fixtures/proc.js';
import type { Registry } from '../fixtures/registry.js';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const TOOLS = ['/usr/bin/docker-registry', '/usr/sbin/dockerd', '/usr/bin/containerd', '/usr/bin/ctr', '/usr/bin/skopeo'];

/** Where `cmd` is on PATH, as the shell would find it; undefined when it is not. */
export function onPath(cmd: string): string | undefined {
  for (const d of (process.env.PATH ?? '').split(':')) {
    if (d !== '' && existsSync(join(d, cmd))) return join(d, cmd);
  }
  return undefined;
}

/**
 * Skip reason for tests that need root and the real tools (`extra`: more of them, absolute paths
 * or commands looked up on PATH). Under CI (`CI=true`) nothing is skipped: `npm test` installs
 * the tools, so a missing one must fail loudly.
 */
export function e2eSkip(extra: readonly string[] = []): string | false {
  if (process.env.CI === 'true') return false;
  if (process.getuid?.() !== 0) return 'needs root (/etc/hosts, dockerd)';
  const missing = [...TOOLS, ...extra].filter((t) => (t.startsWith('/') ? !existsSync(t) : onPath(t) === undefined));
  return missing.length > 0 ? `missing ${missing.join(', ')} (run scripts/install-deps.sh)` : false;
}

const handedOut = new Set<string>();

/** A random 127.0.0.x address (x in 20..249) with a free port, so parallel tests do not clash. */
export async function loopbackIp(): Promise<string> {
  // Never the same address twice in one test process: helpers derive state dirs from it (a
  // supernode's homeDir), and two live supernodes on one LevelDB fail to open it.
  if (handedOut.size >= 200) handedOut.clear();
  for (;;) {
    const ip = `127.0.0.${20 + Math.floor(Math.random() * 230)}`;
    if (handedOut.has(ip)) continue;
    handedOut.add(ip);
    try {
      await freePort(ip);
      return ip;
    } catch {
      /* try another */
    }
  }
}

/** Cleanup stack run in reverse order; every step runs even if one fails. */
export class Cleanups {
  private fns: Array<() => Promise<unknown>> = [];
  push(fn: () => Promise<unknown>): void {
    this.fns.push(fn);
  }
  async run(): Promise<void> {
    const errors: unknown[] = [];
    for (const fn of this.fns.reverse()) {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    }
    this.fns = [];
    if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
  }
}

/** Expect each digest to have been GET exactly `n` times (waits for the registry's log lines). */
export async function expectBlobGets(reg: Registry, blobs: Array<{ digest: string; size: number }>, n: number): Promise<void> {
  await waitFor(() => blobs.every((b) => reg.blobGets().filter((g) => g.digest === b.digest).length >= n), {
    timeoutMs: 5_000,
    message: 'registry blob GET log lines',
  });
  for (const b of blobs) {
    const gets = reg.blobGets().filter((g) => g.digest === b.digest);
    assert.equal(gets.length, n, `GETs of ${b.digest}`);
    for (const g of gets) assert.equal(g.status, 200);
    assert.equal(reg.blobBytesServed(b.digest), n * b.size, `bytes served for ${b.digest}`);
  }
}

/** A seed file from test/data/seed with placeholders and paths replaced, written to `dir`. */
export async function seedFile(name: string, dir: string, subst: Record<string, string>): Promise<string> {
  let text = readFileSync(join(REPO_ROOT, 'test', 'data', 'seed', name), 'utf8');
  // Longest placeholders first: the guide has a malformed `<x></x>` beside the plain `<x>`.
  for (const k of Object.keys(subst).sort((a, b) => b.length - a.length)) text = text.split(k).join(subst[k]);
  const out = join(dir, name);
  await writeFile(out, text);
  return out;
}

export interface Daemon {
  proc: Tracked;
  host: string;
  port: number;
  url: string;
  stop(): Promise<void>;
}

/** Start ./bin/<name> as a real process and wait until it answers /_ping on host:port. */
export async function startBin(name: 'supernode' | 'dfdaemon', args: string[], host: string, port: number, env: Record<string, string> = {}): Promise<Daemon> {
  const proc = await spawnTracked(join(REPO_ROOT, 'bin', name), args, {
    name,
    env: { ...process.env, DF_LOG_LEVEL: process.env.DF_LOG_LEVEL ?? 'info', ...env },
  });
  const url = `http://${host}:${port}`;
  try {
    // A daemon that exited will not answer: say why at once instead of polling until the timeout.
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (proc.exitInfo()) throw new Error(`${name} exited: ${proc.readLog().slice(-2000)}`);
      const res = await fetch(`${url}/_ping`).catch(() => undefined);
      if (res?.ok) break;
      if (Date.now() > deadline) throw new Error(`${name} on ${url} did not answer /_ping within 15 s`);
      await sleep(50);
    }
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return { proc, host, port, url, stop: async () => void (await proc.stop()) };
}

/**
 * startBin on a port freePort found. Between freePort closing its probe and the daemon binding,
 * another socket on the host may take that port (one CI run lost a supernode to EADDRINUSE), so
 * that case is retried on a new port.
 */
export async function startBinOnFreePort(name: 'supernode' | 'dfdaemon', host: string, args: (port: number) => string[], env: Record<string, string> = {}): Promise<Daemon> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort(host);
    try {
      return await startBin(name, args(port), host, port, env);
    } catch (err) {
      if (attempt >= 3 || !/EADDRINUSE/.test((err as Error).message)) throw err;
    }
  }
}

/** Scrape a Prometheus endpoint. */
export async function scrape(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`);
  return res.text();
}
