// Our dfdaemon in front of a stock Dragonfly 1.0.x supernode (a fake applying its rules, see
// helpers/peer-fake-stock.ts): blobs must come through P2P with the stock protocol, not fall
// back to the origin.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Dfdaemon } from '../dfdaemon/daemon.js';
import { SupernodeClient } from '../dfdaemon/peer/supernode-client.js';
import { type RegisterBody } from '../dfdaemon/peer/supernode-wire.js';
import { parseNodeList } from '../shared/config/dfget-flags.js';
import { createLogger } from '../shared/log/index.js';
import { Layout, WRAP_OVERHEAD } from '../shared/protocol/pieces.js';
import { dfdaemonAt } from './helpers/cluster.js';
import { startFakeStock, type FakeStock, type StockOptions } from './helpers/peer-fake-stock.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { getViaProxy } from './helpers/proxy-get.js';

const PIECE = 256 * 1024;

describe('dfdaemon with a stock supernode', () => {
  let dir: string;
  let origin: Origin;
  const open: { fake?: FakeStock; df?: Dfdaemon }[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-peer-stock-'));
    origin = await startOrigin();
  });
  after(async () => {
    for (const o of open) {
      await o.df?.close();
      await o.fake?.close();
    }
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A fresh blob (ten pieces, the last one short), a fake stock supernode with it, and a dfdaemon using it. */
  async function setup(name: string, opts: Omit<StockOptions, 'pieceSize'>) {
    const blob = randomBlob(10 * (PIECE - WRAP_OVERHEAD) - 777);
    const digest = origin.add(blob);
    const url = origin.blobUrl(digest);
    const fake = await startFakeStock({ pieceSize: PIECE, ...opts });
    fake.blobs.set(url, blob);
    await mkdir(join(dir, name));
    const df = await dfdaemonAt(join(dir, name), '127.0.0.1', [fake.node]);
    open.push({ fake, df });
    return { blob, digest, url, fake, df, layout: new Layout(blob.length, PIECE) };
  }

  it('pulls a blob by P2P: 700 while it waits, with back-off; piece results after; /peer/piece/suc for each piece', async () => {
    const waitMs = 2_500;
    const { blob, digest, url, fake, df, layout } = await setup('p2p', { waitMs });
    const r = await getViaProxy('127.0.0.1', df.port, url);
    assert.equal(r.status, 200);
    assert.equal(r.bytes, blob.length);
    assert.equal(r.sha256, digest);
    assert.equal(origin.requests.get(digest) ?? 0, 0, 'nothing from the origin');
    assert.equal(fake.piecesServed, layout.count, 'every piece from the supernode, once');

    const calls = fake.taskCalls;
    assert.ok(calls.length > 0);
    assert.deepEqual(calls.filter((c) => c.q.status === '701' && !c.q.range), [], 'no 701 without a range');
    assert.deepEqual(calls.filter((c) => c.q.status === '702' && c.q.range), [], 'no 702 carrying a piece');
    assert.deepEqual(calls.filter((c) => c.code === 501 || c.code === 502), [], 'no request the supernode refused');
    const first = calls.findIndex((c) => c.code === 601);
    assert.ok(first > 0);
    assert.ok(calls.slice(0, first + 1).every((c) => c.q.status === '700' && !c.q.range), 'until the first pieces, 700');

    const full = (n: number) => `${n * PIECE}-${n * PIECE + PIECE - 1}`;
    const suc = fake.pieceSuc.map((q) => q.pieceRange).sort();
    assert.deepEqual(suc, Array.from({ length: layout.count }, (_, n) => full(n)).sort(), 'one /peer/piece/suc per piece');
    assert.ok(fake.pieceSuc.every((q) => q.cid === df.cid && q.dstCid.startsWith('cdnnode:')));

    // dfget's back-off (50-100 ms doubling to 800-1600 ms): a handful of polls in 2.5 s.
    const waiting = calls.filter((c) => c.at - calls[0].at < waitMs).length;
    assert.ok(waiting >= 3 && waiting <= 9, `${waiting} polls while the supernode said wait`);
  });

  it('cdnSource "source": straight to the origin, no P2P loop', async () => {
    const { blob, digest, url, fake, df } = await setup('source', { cdnSource: 'source' });
    const t0 = Date.now();
    const r = await getViaProxy('127.0.0.1', df.port, url);
    assert.equal(r.status, 200);
    assert.equal(r.bytes, blob.length);
    assert.equal(r.sha256, digest);
    assert.ok(Date.now() - t0 < 5_000, 'no 30 s stall first');
    assert.equal(fake.taskCalls.length, 0, 'no /peer/task');
    assert.equal(origin.requests.get(digest), 1);
  });

  it('a 502 (this peer unknown) mid-download: registers again and carries on by P2P', async () => {
    const { blob, digest, url, fake, df } = await setup('migrate', { forgetAfterSuc: 3, pieceDelayMs: 20 });
    const r = await getViaProxy('127.0.0.1', df.port, url);
    assert.equal(r.status, 200);
    assert.equal(r.sha256, digest);
    assert.equal(r.bytes, blob.length);
    assert.ok(fake.taskCalls.some((c) => c.code === 502), 'the supernode did forget the peer');
    assert.ok(fake.registrations.filter((x) => x.cid === df.cid).length >= 2, 'registered again');
    assert.equal(origin.requests.get(digest) ?? 0, 0, 'nothing from the origin');
  });

  it('a registration refused for our peer port says which ports a stock supernode takes', async () => {
    const fake = await startFakeStock({ pieceSize: PIECE });
    open.push({ fake });
    const url = 'http://origin.invalid/v2/x/blobs/sha256:00';
    fake.blobs.set(url, Buffer.alloc(1));
    const client = new SupernodeClient(parseNodeList(fake.node, 'n'), createLogger('test', { level: 'silent' }));
    const body: RegisterBody = { rawUrl: url, taskUrl: url, cid: 'c', ip: '127.0.0.1', port: 65001, path: '/peer/file/t', hostName: 'h', version: 'v', superNodeIp: '', headers: [], dfdaemon: true, relay: true, insecure: false, rootCAs: [] };
    try {
      await assert.rejects(client.register('k', async () => body), (err: Error) => {
        assert.match(err.message, /65001/);
        assert.match(err.message, /15000-65000/);
        assert.match(err.message, /peerPort/);
        return true;
      });
    } finally {
      await client.close();
    }
  });
});
