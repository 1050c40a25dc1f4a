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
});
