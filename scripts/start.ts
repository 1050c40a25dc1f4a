// `npm start`: a supernode and a dfdaemon on this host with defaults, the dfdaemon pointed at the
// supernode. Either one exiting stops the other, and Ctrl-C stops both.
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const extra = process.argv.slice(2);
const children: ChildProcess[] = [];

function run(bin: string, args: string[]): ChildProcess {
  const child = spawn(join(root, 'bin', bin), args, { stdio: 'inherit' });
  child.once('exit', (code, signal) => {
    process.stderr.write(`${bin} exited (${signal ?? code})\n`);
    stop(code ?? 1);
  });
  children.push(child);
  return child;
}

let stopping = false;
function stop(code: number): void {
  if (stopping) return;
  stopping = true;
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  setTimeout(() => process.exit(code), 2000).unref();
}

process.once('SIGINT', () => stop(0));
process.once('SIGTERM', () => stop(0));
run('supernode', extra);
run('dfdaemon', ['--node', '127.0.0.1:8002']);
