// The piece store holds a bounded number of open file descriptors whatever the number of task
// files cached (one per file ran a dfdaemon out of descriptors: EMFILE, 502s, and the supernode
// blamed), and running out of descriptors is a local failure, never the source's or the node's.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Agent } from 'node:http';
import { Socket, type AddressInfo } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { DiskRoom } from '../dfdaemon/peer/disk-room.js';
import { SupernodeClient } from '../dfdaemon/peer/supernode-client.js';
import type { RegisterBody } from '../dfdaemon/peer/supernode-wire.js';
import { isOutOfFds, LocalStorageError, localStorageError } from '../dfdaemon/store/disk-error.js';
import { PieceStore } from '../dfdaemon/store/piece-store.js';
import type { TaskFile } from '../dfdaemon/store/task-file.js';
import { Layout } from '../shared/protocol/pieces.js';

const KiB = 1024;
const hexId = () => randomBytes(32).toString('hex');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const openFds = async () => (await readdir('/proc/self/fd')).length;
const emfile = () => Object.assign(new Error('EMFILE: too many open files, open'), { code: 'EMFILE', errno: -24, syscall: 'open' });

/** Until the pool's asynchronous closes have landed (at most 2 s). */
async function settledFds(atMost: number): Promise<number> {
  let n = await openFds();
  for (let i = 0; i < 200 && n > atMost; i++) {
    await new Promise((r) => setTimeout(r, 10));
    n = await openFds();
  }
  return n;
}

async function readWhole(tf: TaskFile): Promise<Buffer> {
  const buf = Buffer.alloc(tf.layout.fileLength);
  assert.equal(await tf.readAt(buf, 0), buf.length);
  return buf;
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfts-store-fds-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('piece store open descriptors', () => {
  it('300 task files under a cap of 16 hold at most 16 descriptors, and each reads back its own bytes', async () => {
    const cap = 16;
    const store = new PieceStore(join(dir, 'many'), Date.now, { maxOpenFiles: cap });
    await store.ready();
    const base = await openFds();
    const files: Array<{ tf: TaskFile; digest: string }> = [];
    for (let i = 0; i < 300; i++) {
      const body = randomBytes(8 * KiB + i);
      const tf = await store.open(hexId(), new Layout(body.length, 4 * 1024 * KiB));
      // Two writes, so a file is reopened between them once the pool evicted it.
      await tf.writeAt(body.subarray(0, 4 * KiB), 0);
      await tf.writev([body.subarray(4 * KiB)], 4 * KiB);
      tf.markDone(0);
      files.push({ tf, digest: sha(body) });
    }
    const afterWrites = await settledFds(base + cap);
    assert.ok(afterWrites - base <= cap, `${afterWrites - base} descriptors held for 300 task files (cap ${cap})`);

    // All at once: handles in use are never closed under their readers, so the pool goes over
    // its cap while they run and back under it once they are done.
    const got = await Promise.all(files.map(({ tf }) => readWhole(tf)));
    got.forEach((b, i) => assert.equal(sha(b), files[i].digest, `file ${i} read back other bytes`));
    const afterReads = await settledFds(base + cap);
    assert.ok(afterReads - base <= cap, `${afterReads - base} descriptors held after reading 300 files back (cap ${cap})`);
    assert.ok(store.handles.size <= cap);
    await store.close();
  });

  it('a removed task file is never reopened, even when a new file took its path', async () => {
    const store = new PieceStore(join(dir, 'removed'), Date.now, { maxOpenFiles: 1 });
    const id = hexId();
    const old = await store.open(id, new Layout(4 * KiB, 4 * 1024 * KiB));
    await old.writeAt(Buffer.alloc(4 * KiB, 1), 0);
    const fresh = await store.open(id, new Layout(8 * KiB, 4 * 1024 * KiB));
    await fresh.writeAt(Buffer.alloc(8 * KiB, 2), 0);
    // Evict `fresh`'s handle, so a read of `old` would have to open the path anew.
    const other = await store.open(hexId(), new Layout(10, 4 * 1024 * KiB));
    await other.writeAt(Buffer.alloc(10), 0);
    await assert.rejects(old.readAt(Buffer.alloc(10), 0), { code: 'EBADF' });
    assert.ok((await readWhole(fresh)).equals(Buffer.alloc(8 * KiB, 2)));
    await store.close();
  });

  it('in a process limited to 100 descriptors, 400 cached task files are written and read back', async () => {
    const storeUrl = new URL('../dfdaemon/store/piece-store.js', import.meta.url).href;
    const layoutUrl = new URL('../shared/protocol/pieces.js', import.meta.url).href;
    const repo = join(dir, 'limited');
    const script = `
      const { PieceStore } = await import(${JSON.stringify(storeUrl)});
      const { Layout } = await import(${JSON.stringify(layoutUrl)});
      const { readdirSync } = await import('node:fs');
      const store = new PieceStore(${JSON.stringify(repo)}, Date.now, { maxOpenFiles: 32 });
      await store.ready();
      const tfs = [];
      let maxFds = 0;
      for (let i = 0; i < 400; i++) {
        const tf = await store.open(String(i).padStart(64, '0'), new Layout(1024, 1 << 22));
        await tf.writeAt(Buffer.alloc(1024, i % 251), 0);
        tfs.push(tf);
        maxFds = Math.max(maxFds, readdirSync('/proc/self/fd').length);
      }
      let bad = 0;
      for (let i = 0; i < 400; i++) {
        const b = Buffer.alloc(1024);
        await tfs[i].readAt(b, 0);
        if (!b.equals(Buffer.alloc(1024, i % 251))) bad++;
      }
      process.stdout.write(JSON.stringify({ bad, maxFds }));
      await store.close();`;
    const child = spawn('sh', ['-c', 'ulimit -n 100 && exec "$0" --input-type=module -e "$1"', process.execPath, script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const code = await new Promise((r) => child.once('exit', r));
    assert.equal(code, 0, `child failed: ${err.split('\n').find((l) => /Error/.test(l)) ?? err.slice(0, 300)}`);
    const res = JSON.parse(out) as { bad: number; maxFds: number };
    assert.equal(res.bad, 0);
    assert.ok(res.maxFds < 100, `${res.maxFds} descriptors`);
  });

  it('out of descriptors, the pool closes its idle handles and opens again', async () => {
    // A simulated process limit of 10 live handles, and no cap of the pool's own to keep under it.
    const store = new PieceStore(join(dir, 'shed'), Date.now, { maxOpenFiles: 10_000 });
    const openFile = store.handles.openFile;
    let live = 0;
    let refused = 0;
    store.handles.openFile = async (path, flags) => {
      if (live >= 10) {
        refused++;
        throw emfile();
      }
      const fh = await openFile(path, flags);
      live++;
      const close = fh.close.bind(fh);
      fh.close = async () => {
        live--;
        return close();
      };
      return fh;
    };
    const tfs: TaskFile[] = [];
    for (let i = 0; i < 50; i++) {
      const tf = await store.open(hexId(), new Layout(100, 4 * 1024 * KiB));
      await tf.writeAt(Buffer.alloc(100, i), 0);
      tfs.push(tf);
    }
    for (let i = 0; i < 50; i++) assert.ok((await readWhole(tfs[i])).equals(Buffer.alloc(100, i)));
    assert.ok(refused > 0, 'the simulated limit was reached');
    assert.ok(live <= 10);
    await store.close();
  });
});

describe('running out of descriptors is a local failure', () => {
  it('EMFILE and ENFILE are LocalStorageErrors that say so, through a cause chain too', () => {
    for (const code of ['EMFILE', 'ENFILE']) {
      const e = localStorageError(Object.assign(new Error(code), { code }), 'opening');
      assert.ok(e instanceof LocalStorageError, code);
      assert.equal(e.code, 'LOCAL_STORAGE');
      assert.equal(e.errno, code);
      assert.ok(e.outOfFds);
    }
    assert.ok(isOutOfFds(new Error('fetch failed', { cause: emfile() })));
    assert.ok(!isOutOfFds(Object.assign(new Error('ECONNREFUSED'), { code: 'ECONNREFUSED' })));
    assert.ok(!localStorageError(Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' }), 'w')!.outOfFds);
  });

  it('a task file that cannot be opened for lack of descriptors fails the download as local, without refusing later ones', async () => {
    const store = new PieceStore(join(dir, 'room'), Date.now);
    store.handles.openFile = async () => {
      throw emfile();
    };
    const stop = new AbortController();
    const room = new DiskRoom({ store, log: pino({ level: 'silent' }) }, stop.signal);
    const err = await room.open(hexId(), new Layout(1000, 4 * 1024 * KiB)).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof LocalStorageError, `rejected with ${String(err)}`);
    assert.equal(err.errno, 'EMFILE');
    // A disk that is full refuses downloads for a while; a descriptor shortage passes by itself.
    assert.equal(room.storageFailure, undefined);
    await store.close();
  });

  it('a registration whose socket finds no descriptor left fails as local, and the supernode is not marked failed', async () => {
    let asked = 0;
    const node = createServer((_req, res) => {
      asked++;
      res.end('{}');
    });
    await new Promise<void>((r) => node.listen(0, '127.0.0.1', r));
    const port = (node.address() as AddressInfo).port;
    const client = new SupernodeClient([{ host: '127.0.0.1', port, weight: 1, addr: `127.0.0.1:${port}` }], pino({ level: 'silent' }));
    // The socket fails as connect() does when the process is out of descriptors.
    (client as unknown as { agent: Agent }).agent.createConnection = () => {
      const s = new Socket();
      process.nextTick(() => s.destroy(emfile()));
      return s;
    };
    try {
      const err = await client.register('k', async () => ({}) as RegisterBody).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof LocalStorageError, `rejected with ${String(err)}`);
      assert.equal(err.errno, 'EMFILE');
      assert.equal(asked, 0);
      assert.equal(client.allFailing(), false, 'the supernode was blamed for our descriptor shortage');
    } finally {
      node.close();
    }
  });
});
