import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Dfdaemon } from '../dfdaemon/daemon.js';
import type { Supernode } from '../supernode/server.js';
import { dfdaemonAt, metric, supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { getViaProxy } from './helpers/proxy-get.js';

async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('resilience', () => {
  let dir: string;
  let origin: Origin;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-res-'));
    origin = await startOrigin('127.0.0.1');
  });
  after(async () => {
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('goes back to the source when no supernode answers', async () => {
    const peer = await dfdaemonAt(dir, '127.0.0.5', [`127.0.0.1:${await deadPort()}`]);
    try {
      const d = origin.add(randomBlob(9 * 1024 * 1024));
      const r = await getViaProxy('127.0.0.5', peer.port, origin.blobUrl(d));
      assert.equal(r.status, 200);
      assert.equal(r.sha256, d);
      const text = await peer.metrics.registry.metrics();
      assert.equal(metric(text, 'dfdaemon_source_bytes_total'), 9 * 1024 * 1024);
      assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'source' }), 1);
    } finally {
      await peer.close();
    }
  });

  it('refetches a corrupted piece from elsewhere and delivers an intact blob', async () => {
    const sn: Supernode = await supernodeAt(dir, '127.0.0.1');
    const a: Dfdaemon = await dfdaemonAt(dir, '127.0.0.6', [`127.0.0.1:${sn.apiPort}`]);
    const b: Dfdaemon = await dfdaemonAt(dir, '127.0.0.7', [`127.0.0.1:${sn.apiPort}`]);
    try {
      const size = 18 * 1024 * 1024;
      const d = origin.add(randomBlob(size));
      const url = origin.blobUrl(d);
      const ra = await getViaProxy('127.0.0.6', a.port, url);
      assert.equal(ra.sha256, d);
      // Rot one byte in every piece of A's copy on disk: A still believes its pieces are good.
      const [tf] = [...a.store.all()];
      const fh = await open(tf.path, 'r+');
      for (let n = 0; n < tf.layout.count; n++) {
        const pos = tf.layout.piece(n).rawStart + 100;
        const one = Buffer.alloc(1);
        await fh.read(one, 0, 1, pos);
        one[0] ^= 0xff;
        await fh.write(one, 0, 1, pos);
      }
      await fh.close();
      const rb = await getViaProxy('127.0.0.7', b.port, url);
      assert.equal(rb.status, 200);
      assert.equal(rb.sha256, d, 'B got the intact blob');
      const text = await b.metrics.registry.metrics();
      assert.ok(metric(text, 'dfdaemon_piece_failures_total', { source: 'peer' }) >= 1, 'B rejected a bad piece from A');
      assert.equal(origin.requests.get(d), 1, 'the origin was still asked only once');
    } finally {
      await b.close();
      await a.close();
      await sn.close();
    }
  });
});
