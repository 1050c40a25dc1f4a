// A download must not tear down its keep-alive connection to the supernode on the way out.
// When every missing piece is already running here, a parked long poll can learn nothing new
// (the next completion or failure asks anyway), and ending the download aborts it, which
// destroys its socket: every small blob then paid a new connection to the supernode.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Dfdaemon } from '../dfdaemon/daemon.js';
import type { Supernode } from '../supernode/server.js';
import { dfdaemonAt, supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { getViaProxy } from './helpers/proxy-get.js';

describe('sequential small downloads through one dfdaemon', () => {
  let dir: string;
  let origin: Origin;
  let sn: Supernode;
  const peers: Dfdaemon[] = [];
  /** New connections to the supernode's API port (the dfdaemons all dial from 127.0.0.1). */
  let conns = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-keepalive-'));
    origin = await startOrigin('127.0.0.1');
    sn = await supernodeAt(dir, '127.0.0.1');
    sn.api.server.on('connection', () => conns++);
    for (const host of ['127.0.0.2', '127.0.0.3']) peers.push(await dfdaemonAt(dir, host, [`127.0.0.1:${sn.apiPort}`]));
  });

  after(async () => {
    for (const p of peers) await p.close();
    await sn.close();
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reuse their connections to the supernode (warm CDN, one piece each)', async () => {
    const N = 12;
    const blobs = Array.from({ length: N }, () => origin.add(randomBlob(4 * 1024)));
    // The first peer warms the CDN; the second pulls what the supernode already holds.
    for (const d of blobs) assert.equal((await getViaProxy('127.0.0.2', peers[0].port, origin.blobUrl(d))).sha256, d);
    const before = conns;
    for (const d of blobs) {
      const r = await getViaProxy('127.0.0.3', peers[1].port, origin.blobUrl(d));
      assert.equal(r.status, 200);
      assert.equal(r.sha256, d);
    }
    const opened = conns - before;
    // Each blob is a registration, a poll and a final report, in sequence: the keep-alive pool
    // needs a couple of sockets at most, not one more per blob.
    assert.ok(opened <= 3, `${opened} new connections to the supernode for ${N} sequential blobs`);
    for (const d of blobs) assert.equal(origin.requests.get(d), 1, 'the origin served each blob once');
  });
});
