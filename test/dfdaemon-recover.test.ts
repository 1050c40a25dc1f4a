// A supernode that is up but forgot a task (restart, disk GC, DELETE /api/v1/tasks) is not a
// lost supernode: the dfdaemon registers there again, keeps its verified pieces and finishes
// P2P, instead of demoting the node and completing the blob from the origin. And when it does
// go to the origin, a resume the origin answers from the wrong offset is refused, not written.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fillFromSource, openOrigin } from '../dfdaemon/peer/back-source.js';
import { Downloader, type Started } from '../dfdaemon/peer/downloader.js';
import { SupernodeClient } from '../dfdaemon/peer/supernode-client.js';
import { PieceStore } from '../dfdaemon/store/piece-store.js';
import type { TaskFile } from '../dfdaemon/store/task-file.js';
import { parseNodeList } from '../shared/config/dfget-flags.js';
import { createLogger } from '../shared/log/index.js';
import { Layout, pieceSizeFor } from '../shared/protocol/pieces.js';
import type { Supernode } from '../supernode/server.js';
import { waitFor } from './fixtures/proc.js';
import { metric, supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';

const MiB = 1024 * 1024;
const quiet = createLogger('test', { level: process.env.DF_LOG_LEVEL ?? 'silent' });
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Peer {
  dl: Downloader;
  client: SupernodeClient;
  store: PieceStore;
  cid: string;
  sourceBytes: () => number;
  close(): Promise<void>;
}

let dir: string;
let origin: Origin;
const sns: Supernode[] = [];
const hosts = new Map<Supernode, string>();
const api = (sn: Supernode) => `${hosts.get(sn)}:${sn.apiPort}`;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfts-recover-'));
  origin = await startOrigin('127.0.0.1');
  // Two supernodes on distinct loopback addresses (their homeDirs follow the address).
  for (const host of ['127.0.0.1', '127.0.0.9']) {
    const sn = await supernodeAt(dir, host);
    hosts.set(sn, host);
    sns.push(sn);
  }
});

after(async () => {
  for (const sn of sns) await sn.close();
  await origin.close();
  await rm(dir, { recursive: true, force: true });
});

/**
 * A Downloader as the dfdaemon builds one, throttled to `rate` so a test can act mid-download
 * (the supernode's CDN is not throttled: only this peer is slow).
 */
function peer(name: string, nodes: string[], rate = 2 * MiB): Peer {
  const store = new PieceStore(join(dir, name));
  const client = new SupernodeClient(parseNodeList(nodes.join(','), 'n'), quiet);
  const cid = `127.0.0.1-${name}-${randomBytes(3).toString('hex')}`;
  let source = 0;
  const counters = { pieceBytes: () => undefined, pieceFailed: () => undefined, pieceBusy: () => undefined, sourceBytes: (n: number) => void (source += n) };
  const dl = new Downloader({ store, client, cid, uploadPort: 0, localIP: '127.0.0.1', filter: ['Expires', 'Signature'], rate, counters, log: quiet });
  return {
    dl,
    client,
    store,
    cid,
    sourceBytes: () => source,
    close: async () => {
      await dl.close();
      await client.close();
      await store.close();
    },
  };
}

const registrations = async (sn: Supernode) => metric(await sn.metrics.registry.metrics(), 'supernode_registrations_total', { result: 'ok' });

/**
 * Some pieces held, many still missing: the moment to make the supernode forget. Piece 0 among
 * them, so a fallback to the origin resumes with a Range (from > 0).
 */
async function midway(s: Started): Promise<number> {
  const held = () => (s.tf.has(0) && s.tf.completedPieces >= 2 ? s.tf.completedPieces : undefined);
  return waitFor(held, { timeoutMs: 20_000, message: 'some pieces through P2P' });
}

async function bytesOf(tf: TaskFile): Promise<Buffer> {
  return readFile(tf.path);
}

describe('a supernode that forgot the task', () => {
  it('gets the task registered again and the download finishes P2P, nothing from the origin', async () => {
    const sn = sns[0];
    const blob = randomBlob(8 * MiB + 321);
    const digest = origin.add(blob);
    const p = peer('dropped', [api(sn)]);
    try {
      const regs = await registrations(sn);
      const s = await p.dl.start({ url: origin.blobUrl(digest), headers: {} });
      assert.equal(s.via, 'p2p');
      const held = await midway(s);
      const res = await fetch(`http://${api(sn)}/api/v1/tasks/${s.tf.taskId}`, { method: 'DELETE' });
      assert.equal(res.status, 204);
      await s.done;
      assert.ok(held < s.tf.layout.count, 'the task was dropped mid-download');
      assert.equal(sha256(await bytesOf(s.tf)), digest, 'the blob is whole and correct');
      assert.equal(p.sourceBytes(), 0, 'the dfdaemon never went to the origin itself');
      assert.equal((await registrations(sn)) - regs, 2, 'registered once, then once again with the same supernode');
    } finally {
      await p.close();
    }
  });

  it('gets this peer registered again when the supernode knows the task but not the peer', async () => {
    const sn = sns[0];
    const blob = randomBlob(8 * MiB + 55);
    const digest = origin.add(blob);
    const p = peer('peer-dropped', [api(sn)]);
    try {
      const regs = await registrations(sn);
      const s = await p.dl.start({ url: origin.blobUrl(digest), headers: {} });
      await midway(s);
      // What a peer sees when another one re-registered the task first after a restart or drop.
      const res = await fetch(`http://${api(sn)}/api/v1/peers/${encodeURIComponent(p.cid)}`, { method: 'DELETE' });
      assert.equal(res.status, 204);
      await s.done;
      assert.equal(sha256(await bytesOf(s.tf)), digest);
      assert.equal(p.sourceBytes(), 0, 'the dfdaemon never went to the origin itself');
      assert.equal((await registrations(sn)) - regs, 2);
    } finally {
      await p.close();
    }
  });

  it('is not demoted: the task stays with it, the other supernode never sees it', async () => {
    const nodes = sns.map(api);
    const p = peer('two-nodes', nodes);
    try {
      // A blob that ranks the first supernode first.
      let blob: Buffer;
      let digest: string;
      do {
        blob = randomBlob(8 * MiB + 99);
        digest = origin.add(blob);
      } while (p.client.order(p.dl.localTaskId({ url: origin.blobUrl(digest), headers: {} }))[0] !== nodes[0]);
      const key = p.dl.localTaskId({ url: origin.blobUrl(digest), headers: {} });
      const other = await registrations(sns[1]);
      const s = await p.dl.start({ url: origin.blobUrl(digest), headers: {} });
      await midway(s);
      assert.equal((await fetch(`http://${nodes[0]}/api/v1/tasks/${s.tf.taskId}`, { method: 'DELETE' })).status, 204);
      await s.done;
      assert.equal(sha256(await bytesOf(s.tf)), digest);
      assert.equal(p.sourceBytes(), 0);
      assert.equal(await registrations(sns[1]), other, 'the task did not move to the other supernode');
      assert.equal(p.client.order(key)[0], nodes[0], 'the supernode that forgot the task still ranks first');
    } finally {
      await p.close();
    }
  });

  it('that keeps forgetting it: a bounded number of registrations, then the origin completes the blob', async () => {
    const sn = sns[0];
    const blob = randomBlob(8 * MiB + 7);
    const digest = origin.add(blob);
    const p = peer('forgetful', [api(sn)]);
    let forgetting: NodeJS.Timeout | undefined;
    try {
      const regs = await registrations(sn);
      const s = await p.dl.start({ url: origin.blobUrl(digest), headers: {} });
      await midway(s);
      forgetting = setInterval(() => void fetch(`http://${api(sn)}/api/v1/tasks/${s.tf.taskId}`, { method: 'DELETE' }).catch(() => undefined), 100);
      await s.done;
      assert.equal(sha256(await bytesOf(s.tf)), digest);
      assert.equal((await registrations(sn)) - regs, 3, 'registered again twice, not more');
      assert.ok(p.sourceBytes() > 0 && p.sourceBytes() < blob.length, `the origin sent the missing part only (${p.sourceBytes()})`);
    } finally {
      clearInterval(forgetting);
      await p.close();
    }
  });
});

describe('a supernode restarted mid-download', () => {
  it('is registered with again once it is back, and the download finishes P2P', async () => {
    // Its own address and home, so the restart keeps its CDN files and nothing else is disturbed.
    const host = '127.0.0.12';
    let sn = await supernodeAt(dir, host);
    const port = sn.apiPort;
    const blob = randomBlob(8 * MiB + 99);
    const digest = origin.add(blob);
    const p = peer('restarted', [`${host}:${port}`]);
    try {
      const s = await p.dl.start({ url: origin.blobUrl(digest), headers: {} });
      await midway(s);
      // Closing resets the long poll dfdaemon holds there: to it, the node is lost, as in a crash.
      await sn.close();
      // Down about as long as a supernode that Docker restarts (a kill, a new container, the
      // restore): 5 s, past the 3 s the downloader once waited.
      await new Promise((r) => setTimeout(r, 5_000));
      sn = await supernodeAt(dir, host, '', ['--port', String(port)]);
      await s.done;
      assert.equal(sha256(await bytesOf(s.tf)), digest);
      assert.equal(p.sourceBytes(), 0, 'nothing from the origin');
      assert.ok((await registrations(sn)) >= 1, 'the restarted supernode took the task');
    } finally {
      await p.close();
      await sn.close();
    }
  });
});

describe('resuming from the origin', () => {
  let server: Server;
  let base: string;
  const blobs = new Map<string, Buffer>();
  before(async () => {
    // Answers any Range with a 206 from byte 0, as a cache that ignores where the range starts.
    server = createServer((req, res) => {
      const data = blobs.get(req.url ?? '');
      if (!data) return void res.writeHead(404).end();
      const ranged = req.headers.range !== undefined;
      res.writeHead(ranged ? 206 : 200, { 'content-length': data.length, ...(ranged ? { 'content-range': `bytes 0-${data.length - 1}/${data.length}` } : {}) });
      res.end(data);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('refuses a 206 that starts elsewhere than asked, and marks no wrong piece done', async () => {
    const sn = sns[0];
    const blob = randomBlob(8 * MiB + 11);
    const path = `/v2/library/test/blobs/sha256:${sha256(blob)}`;
    blobs.set(path, blob);
    const p = peer('bad-range', [api(sn)]);
    let forgetting: NodeJS.Timeout | undefined;
    try {
      const s = await p.dl.start({ url: base + path, headers: {} });
      await midway(s);
      // A supernode that keeps dropping the task sends the download to the origin half-way.
      forgetting = setInterval(() => void fetch(`http://${api(sn)}/api/v1/tasks/${s.tf.taskId}`, { method: 'DELETE' }).catch(() => undefined), 100);
      const err = await s.done.then(() => undefined, (e: Error) => e);
      const bytes = await bytesOf(s.tf);
      const { layout } = s.tf;
      for (let n = 0; n < layout.count; n++) {
        if (!s.tf.has(n)) continue;
        const pc = layout.piece(n);
        assert.ok(bytes.subarray(pc.rawStart, pc.rawStart + pc.contentLen).equals(blob.subarray(pc.rawStart, pc.rawStart + pc.contentLen)), `piece ${n} marked done holds the right bytes`);
      }
      assert.match(String(err), /Content-Range 'bytes 0-/, 'the download fails, saying why');
      assert.equal(s.tf.complete, false);
      assert.equal(p.sourceBytes(), 0, 'not a byte of the refused answer was taken');
    } finally {
      clearInterval(forgetting);
      await p.close();
    }
  });

  it('takes a 200 to a resume as the whole body, filling only what is missing at the right offsets', async () => {
    const length = 3 * MiB + 5;
    const blob = randomBytes(length);
    const path = `/whole/${sha256(blob)}`;
    blobs.set(path, blob);
    const layout = new Layout(length, pieceSizeFor(length));
    const store = new PieceStore(join(dir, 'whole'));
    try {
      const tf = await store.open(randomBytes(32).toString('hex'), layout);
      const first = layout.piece(0);
      await tf.writeAt(blob.subarray(0, first.contentLen), 0);
      tf.markDone(0);
      const from = layout.piece(1).rawStart;
      // This origin answers 200 when asked without a Range; serve that to a resume.
      const src = await openOrigin(base + path, {}, {});
      assert.equal(src.status, 200);
      await fillFromSource(tf, src, from, {});
      assert.equal(tf.complete, true);
      assert.equal(sha256(await readFile(tf.path)), sha256(blob));
    } finally {
      await store.close();
    }
  });

  it('refuses a 200 whose length is not the file length', async () => {
    const length = 2 * MiB;
    const layout = new Layout(length, pieceSizeFor(length));
    const store = new PieceStore(join(dir, 'short'));
    try {
      const tf = await store.open(randomBytes(32).toString('hex'), layout);
      const body = Readable.from([Buffer.alloc(length - 1)]);
      await assert.rejects(fillFromSource(tf, { status: 200, length: length - 1, headers: {}, body }, 0, {}), /expected 2097152/);
      assert.equal(tf.completedPieces, 0);
    } finally {
      await store.close();
    }
  });
});
