import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Dfdaemon } from '../dfdaemon/daemon.js';
import type { Supernode } from '../supernode/server.js';
import { dfdaemonAt, metric, supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { getViaProxy } from './helpers/proxy-get.js';

describe('P2P through dfdaemons (in-process, loopback hosts)', () => {
  let dir: string;
  let origin: Origin;
  let sn: Supernode;
  const peers: Dfdaemon[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-p2p-'));
    origin = await startOrigin('127.0.0.1');
    sn = await supernodeAt(dir, '127.0.0.1');
    for (const host of ['127.0.0.2', '127.0.0.3', '127.0.0.4']) {
      peers.push(await dfdaemonAt(dir, host, [`127.0.0.1:${sn.apiPort}`]));
    }
  });

  after(async () => {
    for (const p of peers) await p.close();
    await sn.close();
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves a blob once from the origin and later peers fetch from earlier ones', async () => {
    const blob = randomBlob(37 * 1024 * 1024 + 123);
    const d = origin.add(blob);
    const url = origin.blobUrl(d);
    const first = await getViaProxy('127.0.0.2', peers[0].port, url);
    assert.equal(first.status, 200);
    assert.equal(first.sha256, d);
    const rest = await Promise.all(peers.slice(1).map((p, i) => getViaProxy(`127.0.0.${i + 3}`, p.port, url)));
    for (const r of rest) {
      assert.equal(r.status, 200);
      assert.equal(r.sha256, d);
    }
    assert.equal(origin.requests.get(d), 1, 'the origin got exactly one request for the blob');
    assert.equal(origin.served.get(d), blob.length, 'the origin sent the blob exactly once');
    for (const p of peers.slice(1)) {
      const text = await p.metrics.registry.metrics();
      assert.ok(metric(text, 'dfdaemon_piece_bytes_total', { source: 'peer' }) > 0, 'later peers took pieces from peers');
    }
    const firstText = await peers[0].metrics.registry.metrics();
    assert.ok(metric(firstText, 'dfdaemon_upload_bytes_total') > 0, 'the first peer uploaded');
  });

  it('peers pulling at once while the CDN still fetches pass pieces on as they arrive (cut-through)', async () => {
    // 8 MiB/s from the origin: the CDN takes ~1.5 s, so each new piece is wanted by all three
    // peers while its first copy is still arriving at one of them.
    origin.rate = 8 * 1024 * 1024;
    try {
      const blob = randomBlob(12 * 1024 * 1024 + 77);
      const d = origin.add(blob);
      const url = origin.blobUrl(d);
      const before = await Promise.all(peers.map(async (p) => metric(await p.metrics.registry.metrics(), 'dfdaemon_relayed_uploads_total')));
      const got = await Promise.all(peers.map((p, i) => getViaProxy(`127.0.0.${i + 2}`, p.port, url)));
      for (const r of got) {
        assert.equal(r.status, 200);
        assert.equal(r.sha256, d);
      }
      assert.equal(origin.served.get(d), blob.length, 'the origin sent the blob once');
      const after = await Promise.all(peers.map(async (p) => metric(await p.metrics.registry.metrics(), 'dfdaemon_relayed_uploads_total')));
      const relayed = after.reduce((a, b) => a + b, 0) - before.reduce((a, b) => a + b, 0);
      assert.ok(relayed > 0, `pieces were relayed while still arriving (${relayed})`);
      const failures = await Promise.all(peers.map(async (p) => metric(await p.metrics.registry.metrics(), 'dfdaemon_piece_failures_total', { source: 'peer' })));
      assert.deepEqual(failures, [0, 0, 0], 'no relayed fetch failed');
    } finally {
      origin.rate = 0;
    }
  });
});
