import { randomBytes } from 'node:crypto';
import { constants, createReadStream, fstatSync, open as openCb, type Stats } from 'node:fs';
import { chmod, chown, lstat, mkdir, open, readlink, realpath, rename, stat } from 'node:fs/promises';
import { Socket } from 'node:net';
import { dirname, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { badRequest } from '../../shared/errors.js';

/**
 * Where dfget's -o bytes land. A path that names a file gets them by temp file + rename, so
 * nothing half-written appears there. Anything else there is kept as it is: a symlink keeps
 * pointing at its target, which gets the bytes; a device, FIFO or socket (/dev/null,
 * /dev/stdout on a pipe) is written into, never renamed over.
 */
export interface Output {
  /** The temp file's directory: beside the real file, or none for a device (no files in /dev). */
  readonly tempDir: string | undefined;
  readonly kind: 'new file' | 'existing file' | 'device or pipe' | 'stdout';
  /** Puts the verified temp file's bytes in place. */
  commit(tmp: string, signal: AbortSignal): Promise<void>;
}

/** The output cannot be written for a reason outside the flags (a file in the way, no access): exit 1. */
export class OutputUnwritable extends Error {
  readonly code = 'OUTPUT_UNWRITABLE';
}

/**
 * A name that fits beside any output, however long the output's own name (NAME_MAX is 255),
 * carrying the PID so a later run can tell a dead run's leftover.
 */
export function tempName(): string {
  return `.dfget-${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
}
// A bare fd, not a FileHandle: the Socket that writes a FIFO owns and closes it.
const openFd = promisify(openCb);

export const TEMP_PREFIX = '.dfget-';
export const TEMP_REST = /^-[0-9a-f]{8}\.tmp$/;

export async function locateOutput(given: string): Promise<Output> {
  const path = resolve(given);
  const st = await stat(path).catch(absent(given));
  if (st?.isDirectory()) throw badRequest(`--output ${given} is a directory; name the file to write`);
  // resolve() drops the slash; the user meant a directory, and none is there.
  if (/\/$/.test(given)) throw badRequest(`--output ${given} ends in / but is no directory; name the file to write`);
  // -o /dev/stdout: the file bytes go down our own fd 1, whatever it is (a socket cannot be
  // reopened through /proc; a redirect with >> must append).
  if (st && isStdout(st)) return { tempDir: undefined, kind: 'stdout', commit: (tmp, signal) => pipeline(createReadStream(tmp), process.stdout, { end: false, signal }) };
  if (st && !st.isFile()) return { tempDir: undefined, kind: 'device or pipe', commit: (tmp, signal) => copyInto(tmp, path, signal) };
  const target = st ? await realpath(path) : await danglingTarget(path);
  // Dragonfly creates the output's directory.
  await mkdir(dirname(target), { recursive: true }).catch((err: NodeJS.ErrnoException) => {
    throw unwritable(given, err);
  });
  return {
    tempDir: dirname(target),
    kind: st ? 'existing file' : 'new file',
    async commit(tmp) {
      if (st) await keepOwnership(tmp, st);
      await rename(tmp, target);
    },
  };
}

/**
 * The replacement keeps the old file's owner and permissions, as `curl -o` writing in place
 * would. Only root may give a file away; set-id bits are not carried over to new content.
 */
async function keepOwnership(tmp: string, st: Stats): Promise<void> {
  if (process.getuid?.() === 0) await chown(tmp, st.uid, st.gid);
  await chmod(tmp, st.mode & 0o777);
}

function isStdout(st: Stats): boolean {
  try {
    const fd1 = fstatSync(1);
    return fd1.dev === st.dev && fd1.ino === st.ino;
  } catch {
    return false; // started with stdout closed
  }
}

/** Write-only: no O_CREAT (a vanished /dev/null must not come back as a file), no O_TRUNC. */
async function copyInto(tmp: string, path: string, signal: AbortSignal): Promise<void> {
  if ((await stat(path)).isFIFO()) {
    // A FIFO blocks open() until a reader comes, and write() while the reader is slow; blocked in
    // libuv's thread pool, either would keep even process.exit() waiting. So: a non-blocking
    // open, and writes through the event loop, which a signal or -e can abort.
    const fd = await openFifo(path, signal);
    await pipeline(createReadStream(tmp), new Socket({ fd, readable: false, writable: true }), { signal });
    return;
  }
  const fh = await open(path, constants.O_WRONLY);
  await pipeline(createReadStream(tmp), fh.createWriteStream(), { signal });
}

/** ENXIO means no reader yet: wait for one, as a blocking open would. */
async function openFifo(path: string, signal: AbortSignal): Promise<number> {
  for (;;) {
    try {
      return await openFd(path, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENXIO') throw err;
      await sleep(100, undefined, { signal });
    }
  }
}

/** A symlink to nothing yet: the file goes where it points, and the link stays. */
async function danglingTarget(path: string): Promise<string> {
  for (let hops = 0; hops < 40; hops++) {
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isSymbolicLink()) return path;
    // Relative to where the link really is, as the kernel resolves it.
    path = resolve(await realpath(dirname(path)), await readlink(path));
  }
  throw new OutputUnwritable(`--output ${path}: too many levels of symbolic links`);
}

function absent(given: string) {
  return (err: NodeJS.ErrnoException): undefined => {
    if (err.code === 'ENOENT') return undefined;
    throw unwritable(given, err);
  };
}

function unwritable(given: string, err: NodeJS.ErrnoException): OutputUnwritable {
  // mkdir says EEXIST and stat ENOTDIR when a file sits where a directory of the path should be.
  const why = err.code === 'ENOTDIR' || err.code === 'EEXIST' ? 'a file is in the way of its directory' : err.message;
  return new OutputUnwritable(`cannot write --output ${given}: ${why}`, { cause: err });
}
