import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { REPO_ROOT } from './helpers/e2e.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** bin/dfget with no --node (straight from the origin) unless args say otherwise. */
function dfget(args: string[], opts: { closeStdout?: boolean; cmd?: string; interruptAfterMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(opts.cmd ?? join(REPO_ROOT, 'bin', 'dfget'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    // A reader that goes away before dfget prints its result (`dfget ... | true`).
    if (opts.closeStdout) child.stdout.destroy();
    else child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    if (opts.interruptAfterMs !== undefined) setTimeout(() => child.kill('SIGINT'), opts.interruptAfterMs);
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr: err });
    });
  });
}

describe('dfget -o: what is at the output path', () => {
  let dir: string;
  let origin: Origin;
  let blob: Buffer;
  let url: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-dfget-out-'));
    origin = await startOrigin();
    blob = randomBlob(300_000);
    url = origin.blobUrl(origin.add(blob));
  });
  after(async () => {
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('writes into a FIFO and a character device instead of renaming over them', async () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    // The reader is a process of its own: if dfget never opens the FIFO, it can be killed.
    const cat = spawn('cat', [fifo], { stdio: ['ignore', 'pipe', 'ignore'] });
    const got: Buffer[] = [];
    cat.stdout.on('data', (b: Buffer) => got.push(b));
    const catDone = new Promise<void>((resolve) => cat.on('close', () => resolve()));
    const r = await dfget(['-u', url, '-o', fifo]);
    const killer = setTimeout(() => cat.kill(), 2000);
    await catDone;
    clearTimeout(killer);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Buffer.concat(got).equals(blob), 'the reader got the file');
    assert.ok(lstatSync(fifo).isFIFO(), 'still a FIFO');
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('.dfget-')), [], 'no temp file beside it');

    // No reader ever comes: Ctrl-C still ends the run at once, and cleans up.
    const lonely = join(dir, 'lonely');
    execFileSync('mkfifo', [lonely]);
    const home = join(dir, 'home');
    const t0 = Date.now();
    const i = await dfget(['-u', url, '-o', lonely, '--home', home], { interruptAfterMs: 1000 });
    assert.equal(i.code, 130, i.stderr);
    assert.ok(Date.now() - t0 < 5000, 'not held by a blocked open');
    assert.ok(lstatSync(lonely).isFIFO());
    assert.deepEqual(readdirSync(home), [], 'no piece cache or temp copy left');

    // A /dev/null of our own: mknod needs root (CAP_MKNOD); skip the device half without it.
    const devnull = join(dir, 'null');
    try {
      execFileSync('mknod', [devnull, 'c', '1', '3'], { stdio: 'ignore' });
    } catch {
      return;
    }
    const n = await dfget(['-u', url, '-o', devnull]);
    assert.equal(n.code, 0, n.stderr);
    assert.ok(lstatSync(devnull).isCharacterDevice(), 'still the device');
    assert.equal(statSync(devnull).rdev, statSync('/dev/null').rdev);
  });

  it('-o /dev/stdout (a link to /proc/self/fd/1) puts the bytes on a pipe or a socket, and the result line on stderr', async () => {
    const stdout = join(dir, 'stdout');
    symlinkSync('/proc/self/fd/1', stdout);
    // Node's child stdout is a socket pair; a shell's `|` is a pipe.
    const sock = await dfget(['-u', url, '-o', stdout]);
    const pipe = await dfget(['-c', `set -o pipefail; "$0" "$@" | cat`, join(REPO_ROOT, 'bin', 'dfget'), '-u', url, '-o', stdout], { cmd: 'bash' });
    for (const r of [sock, pipe]) {
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.equals(blob), 'stdout carries exactly the file');
      assert.match(r.stderr, /^download SUCCESS/m);
    }
    assert.ok(lstatSync(stdout).isSymbolicLink(), 'the link is kept');
  });

  it('a symlink stays, and its target (existing or not yet) gets the bytes; an existing file keeps its owner and mode', async () => {
    const target = join(dir, 'models', 'v3.bin');
    mkdirSync(join(dir, 'models'));
    writeFileSync(target, 'old');
    chmodSync(target, 0o600);
    const root = process.getuid?.() === 0;
    if (root) chownSync(target, 1000, 1000);
    const link = join(dir, 'current.bin');
    symlinkSync('models/v3.bin', link);
    const r = await dfget(['-u', url, '-o', link]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(lstatSync(link).isSymbolicLink(), 'the link is kept');
    assert.ok(readFileSync(target).equals(blob), 'its target has the new bytes');
    const st = statSync(target);
    assert.equal(st.mode & 0o777, 0o600);
    if (root) assert.deepEqual([st.uid, st.gid], [1000, 1000]);

    const dangling = join(dir, 'next.bin');
    symlinkSync('models/v4.bin', dangling);
    const d = await dfget(['-u', url, '-o', dangling]);
    assert.equal(d.code, 0, d.stderr);
    assert.ok(lstatSync(dangling).isSymbolicLink());
    assert.ok(readFileSync(join(dir, 'models', 'v4.bin')).equals(blob));
    assert.deepEqual(readdirSync(join(dir, 'models')).sort(), ['v3.bin', 'v4.bin'], 'no temp file left');
  });

  it('a name near NAME_MAX works: the temp name does not grow with it', async () => {
    const long = join(dir, 'a'.repeat(245));
    const r = await dfget(['-u', url, '-o', long]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(readFileSync(long).equals(blob));
  });

  it('refuses a trailing-slash output that is no directory (2) and names a file in the way of the directory (1)', async () => {
    const r = await dfget(['-u', url, '-o', `${join(dir, 'newd')}/`]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /ends in \/ but is no directory/);
    assert.equal(existsSync(join(dir, 'newd')), false);
    writeFileSync(join(dir, 'plain'), 'x');
    const f = await dfget(['-u', url, '-o', join(dir, 'plain', 'sub', 'x')]);
    assert.equal(f.code, 1, f.stderr);
    assert.match(f.stderr, /^dfget: cannot write --output .*plain\/sub\/x: a file is in the way of its directory$/m);
  });
});

describe('dfget output streams', () => {
  let dir: string;
  let origin: Origin;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-dfget-io-'));
    origin = await startOrigin();
  });
  after(async () => {
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a closed stdout after a finished download: exit 0, the file is there, the piece cache is gone', async () => {
    const blob = randomBlob(2 * 1024 * 1024);
    const home = join(dir, 'home');
    const out = join(dir, 'piped');
    const r = await dfget(['-u', origin.blobUrl(origin.add(blob)), '-o', out, '--home', home], { closeStdout: true });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /EPIPE|Unhandled/);
    assert.ok(readFileSync(out).equals(blob));
    assert.deepEqual(readdirSync(home), [], 'no piece cache left');
  });

  it('logs go to stderr; stdout holds only the result line; --verbose adds debug lines', async () => {
    const url = origin.blobUrl(origin.add(randomBlob(50_000)));
    // A refused supernode logs a warning, then the download falls back to the origin.
    const r = await dfget(['-u', url, '-o', join(dir, 'logged'), '--node', '127.0.0.1:1', '--verbose']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString(), /^download SUCCESS: [^\n]*\n$/);
    assert.match(r.stderr, /"msg":"supernode registration failed, trying the next"/);
    assert.match(r.stderr, /"level":20,.*"msg":"download done"/);
  });
});
