// `npm start`: a supernode and a dfdaemon on this host with defaults, the dfdaemon pointed at the
// supernode and, unless /etc/dragonfly/dfdaemon.yml exists, given config/dfdaemon.yml so that
// image layers go through P2P. Either one exiting stops the other, and Ctrl-C stops both.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { loadSupernodeConfig } from '../shared/config/supernode.js';
import { dfdaemonArgs, REPO_ROOT as root } from './start-args.js';

const extra = process.argv.slice(2);
const children: ChildProcess[] = [];
/** How long a daemon gets to stop after SIGTERM before it is killed. */
const GRACE_MS = 5_000;

// The dfdaemon must reach the supernode wherever its flags or supernode.yml put it.
let node = '127.0.0.1:8002';
try {
  const cfg = loadSupernodeConfig({ argv: extra });
  const ip = !cfg.listenIP || cfg.listenIP === '0.0.0.0' || cfg.listenIP === '::' ? '127.0.0.1' : cfg.listenIP;
  if (cfg.listenPort === 0) process.stderr.write('npm start: the supernode takes a random port (--port 0); the dfdaemon cannot follow it, so it uses 8002\n');
  node = `${ip.includes(':') ? `[${ip}]` : ip}:${cfg.listenPort || 8002}`;
} catch {
  // The supernode will print the config error itself and exit 2.
}

function run(bin: string, args: string[]): ChildProcess {
  const child = spawn(join(root, 'bin', bin), args, { stdio: 'inherit' });
  child.once('exit', (code, signal) => {
    if (!stopping) process.stderr.write(`${bin} exited (${signal ?? code})\n`);
    // A daemon that fails on its own fails `npm start` (one that ends cleanly, as for --version,
    // does not); one stopped by us does not either.
    stop(stopping ? 0 : (code ?? 1));
  });
  children.push(child);
  return child;
}

let stopping = false;
function stop(code: number): void {
  if (code !== 0 && !process.exitCode) process.exitCode = code;
  if (stopping) return maybeExit();
  stopping = true;
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  // Not unref'd: this process stays until its children are gone or killed.
  setTimeout(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }, GRACE_MS);
  maybeExit();
}

function maybeExit(): void {
  if (children.every((c) => c.exitCode !== null || c.signalCode !== null)) process.exit();
}

process.once('SIGINT', () => stop(0));
process.once('SIGTERM', () => stop(0));
run('supernode', extra);
run('dfdaemon', dfdaemonArgs(node));
