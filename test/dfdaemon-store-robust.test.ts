// The local store and back-source under failure: a removal that errors, a process killed with
// its task files on disk, an empty blob, and an origin that stalls mid-body. Each case used to
// leave the daemon wedged (no downloads, an unbounded disk, or a request that never ends).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, afterEach, before, describe, it } from 'node:test';
import { fillFromSource, openOrigin } from '../dfdaemon/peer/back-source.js';
import { Downloader } from '../dfdaemon/peer/downloader.js';
import { orderedStream } from '../dfdaemon/peer/ordered-stream.js';
import { SupernodeClient } from '../dfdaemon/peer/supernode-client.js';
import { CacheGc } from '../dfdaemon/store/cache-gc.js';
import { PieceStore } from '../dfdaemon/store/piece-store.js';
import { isDfError } from '../shared/errors.js';
import { createLogger, type Logger } from '../shared/log/index.js';
import { Layout, pieceSizeFor } from '../shared/protocol/pieces.js';

const quiet = createLogger('test', { level: 'silent' });
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const hexId = () => randomBytes(32).toString('hex');

/** A logger that keeps what was warned, to check a failure is reported and not swallowed. */
function recorder(): { log: Logger; warns: Record<string, unknown>[] } {
  const warns: Record<string, unknown>[] = [];
  const log = { info: () => undefined, debug: () => undefined, error: () => undefined, warn: (o: Record<string, unknown>) => warns.push(o) };
  return { log: log as unknown as Logger, warns };
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfts-store-robust-'));
});
after(() => rm(dir, { recursive: true, force: true }));

/** A store holding complete 1000-byte task files, all expired at `now` = 200 s. */
async function storeWith(sub: string, ids: string[]): Promise<{ store: PieceStore; clock: { now: number } }> {
  const clock = { now: 0 };
  const store = new PieceStore(join(dir, sub), () => clock.now);
  for (const id of ids) {
    const tf = await store.open(id, new Layout(1000, 4 * 1024 * 1024));
    await tf.writeAt(Buffer.alloc(1000, 7), 0);
    tf.markDone(0);
  }
  clock.now = 200_000;
  return { store, clock };
}

describe('cache sweeper after a failure', () => {
  it('logs a removal that fails and still removes the other victims', async () => {
    const { store } = await storeWith('rm-fails', ['a', 'b']);
    const a = store.get('a')!;
    const b = store.get('b')!;
    // A directory where the file was: rm without `recursive` fails with EISDIR.
    await rm(a.path);
    await mkdir(a.path);
    await writeFile(join(a.path, 'x'), 'x');
    const { log, warns } = recorder();
    const evicted: string[] = [];
    const gc = new CacheGc(store, { expireMs: 180_000, limitBytes: 10 * 1024 * 1024 }, (tf) => evicted.push(tf.taskId), log);
    await gc.sweep();
    assert.equal(existsSync(b.path), false, 'b is removed although a could not be');
    assert.deepEqual(evicted.sort(), ['a', 'b'], 'the store serves neither any more');
    assert.equal(store.size, 0);
    assert.equal(warns.length, 1);
    assert.equal(warns[0].taskId, 'a');
    await store.close();
  });

  it('a sweep that fails does not fail the sweeps (reserves) after it', async () => {
    const { store } = await storeWith('poisoned', ['c']);
    const c = store.get('c')!;
    let calls = 0;
    const gc = new CacheGc(store, { expireMs: 180_000, limitBytes: 10 * 1024 * 1024 }, () => {
      if (calls++ === 0) throw new Error('notify hook broke');
    }, quiet);
    await assert.rejects(gc.sweep(), /notify hook broke/);
    const d = await store.open('d', new Layout(1000, 4 * 1024 * 1024));
    d.markDone(0);
    d.lastAccess = 0;
    // What the downloader calls before each new download: it must run, and free space.
    await gc.sweep(1000);
    assert.equal(existsSync(d.path), false, 'the later sweep ran');
    assert.equal(existsSync(c.path), false);
    assert.equal(store.size, 0);
    await store.close();
  });
});

describe('piece store on a directory a killed process left', () => {
  it('removes the task files of the killed process, and nothing else', async () => {
    const repo = join(dir, 'repo');
    const id = hexId();
    // A real process, SIGKILLed while it holds a task file open.
    const storeUrl = new URL('../dfdaemon/store/piece-store.js', import.meta.url).href;
    const layoutUrl = new URL('../shared/protocol/pieces.js', import.meta.url).href;
    const script = `
      const { PieceStore } = await import(${JSON.stringify(storeUrl)});
      const { Layout } = await import(${JSON.stringify(layoutUrl)});
      const store = new PieceStore(${JSON.stringify(repo)});
      const tf = await store.open(${JSON.stringify(id)}, new Layout(1 << 20, 1 << 18));
      await tf.writeAt(Buffer.alloc(1 << 20, 1), 0);
      process.stdout.write('held\\n');
      setInterval(() => undefined, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => d.toString().includes('held') && resolve());
        child.once('exit', (code) => reject(new Error(`child exited ${code}`)));
      });
    } finally {
      child.kill('SIGKILL');
    }
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(undefined) : child.once('exit', r)));
    const leftover = join(repo, `${id}.service`);
    assert.equal((await stat(leftover)).size, 1 << 20, 'the killed process left its file');

    // Whatever else lives in the directory is not the store's to remove.
    const outside = join(dir, 'outside.bin');
    await writeFile(outside, 'keep');
    const keep = {
      notes: join(repo, 'notes.txt'),
      shortName: join(repo, 'abc.service'),
      upper: join(repo, `${id.toUpperCase()}.service`),
      suffixed: join(repo, `${hexId()}.service.tmp`),
      aDir: join(repo, `${hexId()}.service`),
      aLink: join(repo, `${hexId()}.service`),
    };
    for (const [k, p] of Object.entries(keep)) {
      if (k === 'aDir') await mkdir(p);
      else if (k === 'aLink') await symlink(outside, p);
      else await writeFile(p, k);
    }

    const store = new PieceStore(repo);
    assert.equal(await store.ready(), 1);
    assert.equal(existsSync(leftover), false);
    for (const [k, p] of Object.entries(keep)) {
      await lstat(p);
      if (k === 'aLink') assert.equal(await readlink(p), outside);
      else if (k !== 'aDir') assert.equal(await readFile(p, 'utf8'), k);
    }
    assert.equal(await readFile(outside, 'utf8'), 'keep');
    // The same task starts again from nothing, and is the only thing counted.
    const tf = await store.open(id, new Layout(10, 1 << 18));
    assert.equal(tf.completedPieces, 0);
    assert.equal(store.bytes, 10);
    await store.close();
  });
});

describe('back-source edge cases', () => {
  const servers: Server[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  });
  async function origin(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
    const s = createServer(handler);
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    return `http://127.0.0.1:${(s.address() as AddressInfo).port}/blobs/x`;
  }

  it('waits for a P2P fetch still writing a piece before filling that piece from the origin', async () => {
    const length = 2 * 1024 * 1024;
    const layout = new Layout(length, pieceSizeFor(length));
    const blob = randomBytes(length);
    const store = new PieceStore(join(dir, 'late-write'));
    try {
      const tf = await store.open(hexId(), layout);
      // The P2P download gave up while its fetch of piece 1 still had a write in flight.
      const abandoned = tf.startPiece(1);
      const body = Readable.from([blob]);
      const fill = fillFromSource(tf, { status: 200, length, headers: {}, body }, 0, {});
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(tf.has(0), true, 'pieces nobody else writes are filled at once');
      assert.equal(tf.has(1), false, 'the piece still being written is not filled under the fetch');
      await tf.writeAt(Buffer.alloc(layout.piece(1).contentLen, 0xee), layout.piece(1).rawStart);
      tf.endPiece(1, abandoned, false);
      await fill;
      assert.equal(tf.complete, true);
      assert.equal(sha256(await readFile(tf.path)), sha256(blob), 'no byte of the abandoned fetch is left');
    } finally {
      await store.close();
    }
  });

  it('an empty blob from the origin completes as an empty file', async () => {
    let hits = 0;
    const url = await origin((_req, res) => {
      hits++;
      res.writeHead(200, { 'content-length': '0' }).end();
    });
    const store = new PieceStore(join(dir, 'empty'));
    const dl = new Downloader({ store, client: new SupernodeClient([], quiet), cid: 'test', uploadPort: 0, localIP: '', filter: [], log: quiet });
    try {
      const s = await dl.start({ url, headers: {} });
      assert.equal(s.via, 'source');
      await s.done;
      assert.equal(s.tf.complete, true);
      assert.equal((await stat(s.tf.path)).size, 0);
      const chunks: Buffer[] = [];
      for await (const c of orderedStream(s.tf, { expectSha256: sha256(Buffer.alloc(0)) })) chunks.push(c as Buffer);
      assert.equal(Buffer.concat(chunks).length, 0);
      // Completed, so the next request is served locally.
      assert.equal((await dl.start({ url, headers: {} })).via, 'local');
      assert.equal(hits, 1);
    } finally {
      await dl.close();
      await store.close();
    }
  });

  it('an origin that stalls mid-body fails the task after the idle timeout, waking its waiters', async () => {
    const idleMs = 300;
    const length = 2 * 1024 * 1024;
    const layout = new Layout(length, pieceSizeFor(length));
    const blob = randomBytes(length);
    let originClosed: Promise<void> | undefined;
    const url = await origin((_req, res) => {
      originClosed = new Promise((r) => res.once('close', () => r()));
      res.writeHead(200, { 'content-length': String(length) }).flushHeaders();
      // Piece 0 in four parts 150 ms apart (600 ms in all, longer than idleMs), then silence.
      const part = Math.ceil(layout.contentSize / 4);
      let i = 0;
      const t = setInterval(() => {
        res.write(blob.subarray(i * part, Math.min((i + 1) * part, layout.contentSize)));
        if (++i === 4) clearInterval(t);
      }, 150);
      res.once('close', () => clearInterval(t));
    });
    const store = new PieceStore(join(dir, 'stall'));
    try {
      const tf = await store.open(hexId(), layout);
      const src = await openOrigin(url, {}, {});
      const started = Date.now();
      const done = fillFromSource(tf, src, 0, { idleMs });
      done.catch((err: Error) => tf.fail(err));
      // A second request joined to the same download waits on a piece that never comes.
      const joined = tf.waitPiece(layout.count - 1).then(() => 'served', (err: unknown) => err);
      let deadline: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        done.then(() => 'completed', (err: unknown) => err),
        new Promise((r) => (deadline = setTimeout(() => r('still hanging after 5 s'), 5_000))),
      ]);
      clearTimeout(deadline);
      assert.ok(isDfError(outcome, 'SOURCE_TIMEOUT'), `expected SOURCE_TIMEOUT, got ${String(outcome)}`);
      assert.ok(Date.now() - started >= 600 + idleMs - 50, 'each chunk restarted the idle timer');
      assert.equal(tf.has(0), true, 'the piece that arrived is kept');
      assert.equal(sha256((await readFile(tf.path)).subarray(0, layout.contentSize)), sha256(blob.subarray(0, layout.contentSize)));
      assert.ok(isDfError(await joined, 'SOURCE_TIMEOUT'), 'the joined request fails too');
      await originClosed;
    } finally {
      await store.close();
    }
  });
});
