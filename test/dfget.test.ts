import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import type { Supernode } from '../supernode/server.js';
import { supernodeAt } from './helpers/cluster.js';
import { REPO_ROOT } from './helpers/e2e.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';

/** Run bin/dfget; `interruptAfterMs` sends it `sig` that long after start. */
function dfget(args: string[], interruptAfterMs?: number, sig: NodeJS.Signals = 'SIGINT'): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(join(REPO_ROOT, 'bin', 'dfget'), args, { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    if (interruptAfterMs !== undefined) setTimeout(() => child.kill(sig), interruptAfterMs);
  });
}

/** How many of this process's file descriptors are open on `path` (the in-process supernode's). */
function openHandles(path: string): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === path;
    } catch {
      return false;
    }
  }).length;
}

describe('dfget CLI and the download port', () => {
  let dir: string;
  let origin: Origin;
  let sn: Supernode;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-dfget-'));
    origin = await startOrigin();
    sn = await supernodeAt(dir, '127.0.0.1');
  });
  after(async () => {
    await sn.close();
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('downloads a file through P2P, then a second dfget gets it without the origin', async () => {
    const blob = randomBlob(6 * 1024 * 1024 + 7);
    const d = origin.add(blob);
    const node = `127.0.0.1:${sn.apiPort}`;
    for (const [i, ip] of ['127.0.0.8', '127.0.0.9'].entries()) {
      const out = join(dir, `out${i}`);
      const r = await dfget(['-u', `${origin.blobUrl(d)}?Expires=1&Signature=x`, '-o', out, '--node', node, '-f', 'Expires&Signature', '--ip', ip]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /download SUCCESS/);
      assert.equal(createHash('sha256').update(readFileSync(out)).digest('hex'), d);
    }
    assert.equal(origin.requests.get(d), 1, 'the filtered URL made both runs one task');
  });

  it('refuses a wrong --md5 and leaves no output behind', async () => {
    const d = origin.add(randomBlob(100_000));
    const out = join(dir, 'bad');
    const r = await dfget(['-u', origin.blobUrl(d), '-o', out, '--node', `127.0.0.1:${sn.apiPort}`, '-m', 'f'.repeat(32)]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /md5/);
    assert.equal(existsSync(out), false);
  });

  it('Ctrl-C and -e end a download with no output, temp file or piece cache left; exit 130 and 1', async () => {
    const d = origin.add(randomBlob(8 * 1024 * 1024));
    const node = `127.0.0.1:${sn.apiPort}`;
    origin.rate = 1024 * 1024;
    try {
      for (const [args, wait, code, msg, sig] of [
        [[], 1500, 130, /interrupted \(SIGINT\)/, 'SIGINT'],
        [[], 1500, 129, /interrupted \(SIGHUP\)/, 'SIGHUP'],
        [['-e', '1s'], undefined, 1, /timed out after 1000 ms/, undefined],
      ] as const) {
        const home = join(dir, `home-${code}`);
        mkdirSync(home);
        const out = join(dir, `partial-${code}`);
        const r = await dfget(['-u', origin.blobUrl(d), '-o', out, '--node', node, '--home', home, ...args], wait, sig);
        assert.equal(r.code, code, r.stderr);
        assert.match(r.stderr, msg);
        assert.equal(existsSync(out), false);
        assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith(`partial-${code}`)), [], 'no temp file');
        assert.deepEqual(readdirSync(home), [], 'no piece cache');
      }
    } finally {
      origin.rate = 0;
    }
  });

  it('creates the output directory, refuses a directory as output, and reports a busy --port in one line', async () => {
    const d = origin.add(randomBlob(50_000));
    const node = `127.0.0.1:${sn.apiPort}`;
    const nested = join(dir, 'a', 'b', 'out');
    const ok = await dfget(['-u', origin.blobUrl(d), '-o', nested, '--node', node, '--minrate', '1M']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stderr, /^dfget: ignored: --minrate$/m, 'a flag with no effect says so');
    assert.equal(createHash('sha256').update(readFileSync(nested)).digest('hex'), d);
    const isDir = await dfget(['-u', origin.blobUrl(d), '-o', join(dir, 'a'), '--node', node]);
    assert.equal(isDir.code, 2);
    assert.match(isDir.stderr, /^dfget: BAD_REQUEST: --output .* is a directory/);
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (busy.address() as { port: number }).port;
      const r = await dfget(['-u', origin.blobUrl(d), '-o', join(dir, 'busy'), '--node', node, '--ip', '127.0.0.1', '--port', String(port)]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^dfget: download FAILED: listen EADDRINUSE/);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    } finally {
      busy.close();
    }
  });

  it('creates a missing --home; removes what a killed run left there and beside the output, once it is old', async () => {
    const d = origin.add(randomBlob(300_000));
    const home = join(dir, 'new-home', 'sub');
    const first = await dfget(['-u', origin.blobUrl(d), '-o', join(dir, 'home-out'), '--node', `127.0.0.1:${sn.apiPort}`, '--home', home]);
    assert.equal(first.code, 0, first.stderr);
    // What a SIGKILLed dfget leaves: its piece cache and its temp output, named by its PID.
    const dead = await new Promise<number>((r) => {
      const c = execFile(process.execPath, ['-e', '0'], () => r(c.pid!));
    });
    const old = new Date(Date.now() - 2 * 3600_000);
    const stale = join(home, `dfget-${dead}-AbC123`);
    mkdirSync(stale);
    writeFileSync(join(stale, 'piece'), 'x');
    const recent = join(home, `dfget-${dead}-XyZ789`);
    mkdirSync(recent);
    writeFileSync(join(recent, 'piece'), 'x');
    const out = join(dir, 'swept-out');
    const staleTmp = `${out}.dfget-${dead}.tmp`;
    writeFileSync(staleTmp, 'partial');
    for (const p of [join(stale, 'piece'), stale, staleTmp]) utimesSync(p, old, old);
    utimesSync(recent, old, old);
    const r = await dfget(['-u', origin.blobUrl(d), '-o', out, '--node', `127.0.0.1:${sn.apiPort}`, '--home', home]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(existsSync(stale), false, 'an old piece cache of a dead dfget is removed');
    assert.equal(existsSync(staleTmp), false, 'its old temp output too');
    assert.equal(existsSync(recent), true, 'one whose files were written lately is kept (a dfget in another PID namespace)');
  });

  it('an empty file through P2P: success, and no piece reported failed', async () => {
    const d = origin.add(Buffer.alloc(0));
    const out = join(dir, 'empty');
    const r = await dfget(['-u', origin.blobUrl(d), '-o', out, '--node', `127.0.0.1:${sn.apiPort}`, '--verbose']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(out).length, 0);
    assert.doesNotMatch(r.stderr + r.stdout, /piece failed/);
  });

  it('exits 2 with usage on bad arguments', async () => {
    assert.equal((await dfget(['-o', join(dir, 'x')])).code, 2);
    assert.equal((await dfget(['--bogus'])).code, 2);
  });

  it('download port rejects bad paths and ranges, and serves only finished pieces', async () => {
    const base = `http://127.0.0.1:${sn.downloadPort}`;
    const get = async (path: string, range?: string) => {
      const res = await request(`${base}${path}`, { headers: range ? { range } : {} });
      await res.body.dump();
      return res.statusCode;
    };
    const id = 'a'.repeat(64);
    assert.equal(await get('/nope'), 404);
    assert.equal(await get(`/download/bbb/${id}`), 404, 'prefix must match the id');
    assert.equal(await get(`/download/aaa/${id}`, 'bytes=0-10'), 404, 'unknown task');
    const [task] = [...sn.cdn.all()];
    const p = sn.downloadPath(task.taskId);
    assert.equal(await get(p), 416, 'a range is required');
    assert.equal(await get(p, 'bytes=0-999999999999'), 416);
    const piece = task.layout!.piece(0);
    assert.equal(await get(p, `bytes=${piece.start}-${piece.end}`), 206);
  });

  it('download port sends exactly the file bytes for a range across pieces, and a peer that hangs up mid-range costs no file handle', async () => {
    const [task] = [...sn.cdn.all()].filter((t) => t.status === 'SUCCESS' && t.layout!.count >= 3);
    assert.ok(task, 'a finished task of several pieces (from the first test)');
    const layout = task.layout!;
    const url = `http://127.0.0.1:${sn.downloadPort}${sn.downloadPath(task.taskId)}`;
    // From inside piece 0 to the end of piece 2: several read chunks, unaligned at the start.
    const start = 3;
    const end = layout.piece(2).end;
    const res = await request(url, { headers: { range: `bytes=${start}-${end}` } });
    assert.equal(res.statusCode, 206);
    const body = Buffer.from(await res.body.arrayBuffer());
    assert.equal(body.length, end - start + 1);
    assert.ok(body.equals(readFileSync(task.path).subarray(start, end + 1)), 'bytes equal the CDN file');

    // Handles on the task file itself: socket counts move too much to compare.
    const fds = () => openHandles(task.path);
    const before = fds();
    // Raw sockets, so the hang-ups land in every moment of a response: a close, a reset, and a
    // half-close (FIN) while still reading. Node drops a write's callback in some of them.
    const path = sn.downloadPath(task.taskId);
    const hangUp = (how: number) =>
      new Promise<void>((resolve) => {
        const sock = connect(sn.downloadPort, '127.0.0.1', () => sock.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-${end}\r\n\r\n`));
        sock.once('data', () => {
          if (how === 0) sock.destroy();
          else if (how === 1) sock.resetAndDestroy();
          else sock.end();
        });
        sock.on('error', () => undefined);
        sock.once('close', () => resolve());
        sock.resume();
      });
    for (let i = 0; i < 60; i++) await hangUp(i % 3);
    for (let i = 0; i < 100 && fds() > before; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(fds() <= before, `file handles back to ${before} after hang-ups (now ${fds()})`);
    const again = await request(url, { headers: { range: `bytes=${start}-${end}` } });
    assert.ok(Buffer.from(await again.body.arrayBuffer()).equals(body), 'still serving after the hang-ups');
  });
});

describe('download port: a peer that stops reading', () => {
  it('is cut after the idle time, and its file handle closed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dfts-dlidle-'));
    const origin = await startOrigin();
    const sn = await supernodeAt(dir, '127.0.0.1', '', [], { uploadIdleMs: 400 });
    try {
      // Larger than loopback's socket buffers, so a reader that never reads stalls the sender.
      const d = origin.add(randomBlob(48 * 1024 * 1024));
      const r = await dfget(['-u', origin.blobUrl(d), '-o', join(dir, 'out'), '--node', `127.0.0.1:${sn.apiPort}`, '--ip', '127.0.0.10']);
      assert.equal(r.code, 0, r.stderr);
      const [task] = [...sn.cdn.all()];
      const handles = () => openHandles(task.path);
      const total = task.layout!.fileLength + task.layout!.count * 5;
      const sock = connect(sn.downloadPort, '127.0.0.1', () =>
        sock.write(`GET ${sn.downloadPath(task.taskId)} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-${total - 1}\r\n\r\n`),
      );
      sock.on('error', () => undefined);
      sock.pause();
      let held = false;
      for (let i = 0; i < 50 && !held; i++) {
        await new Promise((res) => setTimeout(res, 20));
        held = handles() > 0;
      }
      assert.ok(held, 'the request holds the task file while it sends');
      const t0 = Date.now();
      while (handles() > 0 && Date.now() - t0 < 5_000) await new Promise((res) => setTimeout(res, 50));
      assert.equal(handles(), 0, 'the stalled request was cut and its file closed');
      sock.destroy();
    } finally {
      await sn.close();
      await origin.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
