// How a blob was obtained, for dfdaemon_blobs_total{via}: a P2P download that the origin had to
// complete is no P2P blob. Review D saw a dfdaemon count 11 blobs as P2P and none from the
// origin while it had fetched 790 MB there.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Downloader } from '../dfdaemon/peer/downloader.js';
import { SupernodeClient } from '../dfdaemon/peer/supernode-client.js';
import { PieceStore } from '../dfdaemon/store/piece-store.js';
import { parseNodeList } from '../shared/config/dfget-flags.js';
import { createLogger } from '../shared/log/index.js';
import type { Supernode } from '../supernode/server.js';
import { waitFor } from './fixtures/proc.js';
import { supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';

const MiB = 1024 * 1024;
const quiet = createLogger('test', { level: process.env.DF_LOG_LEVEL ?? 'silent' });
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let dir: string;
let origin: Origin;
let sn: Supernode;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfts-via-'));
  origin = await startOrigin('127.0.0.1');
  sn = await supernodeAt(dir, '127.0.0.1');
});

after(async () => {
  await sn.close();
  await origin.close();
  await rm(dir, { recursive: true, force: true });
});

function peer(name: string, nodes: string) {
  const store = new PieceStore(join(dir, name));
  const client = new SupernodeClient(parseNodeList(nodes, 'n'), quiet);
  let source = 0;
  const counters = { pieceBytes: () => undefined, pieceFailed: () => undefined, pieceBusy: () => undefined, sourceBytes: (n: number) => void (source += n) };
  // Throttled, so the test can act mid-download.
  const dl = new Downloader({ store, client, cid: `127.0.0.1-${name}-${randomBytes(3).toString('hex')}`, uploadPort: 0, localIP: '127.0.0.1', filter: [], rate: 2 * MiB, counters, log: quiet });
  return {
    dl,
    sourceBytes: () => source,
    close: async () => {
      await dl.close();
      await client.close();
      await store.close();
    },
  };
}

describe('Started.via', () => {
  it('is p2p for a blob the swarm completed', async () => {
    const blob = randomBlob(2 * MiB + 1);
    const digest = origin.add(blob);
    const p = peer('whole', `127.0.0.1:${sn.apiPort}`);
    try {
      const s = await p.dl.start({ url: origin.blobUrl(digest), headers: {} });
      await s.done;
      assert.equal(sha256(await readFile(s.tf.path)), digest);
      assert.equal(p.sourceBytes(), 0);
      assert.equal(s.via, 'p2p');
    } finally {
      await p.close();
    }
  });

  it('becomes p2p+source when the origin completed a P2P download', async () => {
    const blob = randomBlob(8 * MiB + 3);
    const digest = origin.add(blob);
    const p = peer('fallback', `127.0.0.1:${sn.apiPort}`);
    let forgetting: NodeJS.Timeout | undefined;
    try {
      const s = await p.dl.start({ url: origin.blobUrl(digest), headers: {} });
      assert.equal(s.via, 'p2p', 'P2P while the swarm runs');
      await waitFor(() => (s.tf.completedPieces >= 2 ? true : undefined), { timeoutMs: 20_000, message: 'some pieces through P2P' });
      // A supernode that keeps dropping the task: after two registrations more, the origin.
      forgetting = setInterval(() => void fetch(`http://127.0.0.1:${sn.apiPort}/api/v1/tasks/${s.tf.taskId}`, { method: 'DELETE' }).catch(() => undefined), 100);
      await s.done;
      assert.equal(sha256(await readFile(s.tf.path)), digest);
      assert.ok(p.sourceBytes() > 0, 'the origin sent part of the blob');
      assert.equal(s.via, 'p2p+source');
    } finally {
      clearInterval(forgetting);
      await p.close();
    }
  });

  it('is source when no supernode answers', async () => {
    const blob = randomBlob(1 * MiB + 9);
    const digest = origin.add(blob);
    const p = peer('nosn', '127.0.0.1:1');
    try {
      const s = await p.dl.start({ url: origin.blobUrl(digest), headers: {} });
      await s.done;
      assert.equal(sha256(await readFile(s.tf.path)), digest);
      assert.equal(s.via, 'source');
    } finally {
      await p.close();
    }
  });
});
