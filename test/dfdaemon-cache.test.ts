// The local piece cache: expiry after dfget's --expiretime, the disk bound, and the rule that a
// file being read, uploaded or downloaded is never evicted. Decisions are tested as data, the
// sweeper with a fake clock, and the daemon with a real supernode that hears of the eviction.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Dfdaemon } from '../dfdaemon/daemon.js';
import { orderedStream } from '../dfdaemon/peer/ordered-stream.js';
import { CacheGc, chooseEvictions } from '../dfdaemon/store/cache-gc.js';
import { PieceStore } from '../dfdaemon/store/piece-store.js';
import type { TaskFile } from '../dfdaemon/store/task-file.js';
import { createLogger } from '../shared/log/index.js';
import { Layout } from '../shared/protocol/pieces.js';
import type { Supernode } from '../supernode/server.js';
import { waitFor } from './fixtures/proc.js';
import { dfdaemonAt, metric, supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { getViaProxy } from './helpers/proxy-get.js';

const MiB = 1024 * 1024;
const quiet = createLogger('test', { level: 'silent' });

type Fake = Pick<TaskFile, 'busy' | 'complete' | 'failure' | 'lastAccess' | 'layout' | 'taskId'>;
const fake = (taskId: string, mib: number, lastAccess: number, o: Partial<Fake> = {}): TaskFile =>
  ({ taskId, busy: 0, complete: true, failure: undefined, lastAccess, layout: { fileLength: mib * MiB }, ...o }) as unknown as TaskFile;
const ids = (xs: TaskFile[]) => xs.map((x) => x.taskId).sort();

describe('cache eviction decisions', () => {
  const policy = { expireMs: 180_000, limitBytes: 100 * MiB };

  it('expires idle files after expiretime, never busy or downloading ones', () => {
    const files = [
      fake('old', 1, 0),
      fake('fresh', 1, 100_000),
      fake('old-busy', 1, 0, { busy: 1 }),
      fake('old-downloading', 1, 0, { complete: false }),
      fake('failed', 1, 170_000, { complete: false, failure: new Error('x') }),
    ];
    assert.deepEqual(ids(chooseEvictions(files, 200_000, policy)), ['failed', 'old']);
  });

  it('over the limit, evicts the least recently used idle files until the new download fits', () => {
    const files = [fake('a', 40, 10), fake('b', 40, 30), fake('c', 40, 20, { busy: 1 }), fake('d', 10, 5, { complete: false })];
    assert.deepEqual(ids(chooseEvictions(files, 100, policy)), ['a'], '130 MiB -> 90 MiB');
    assert.deepEqual(ids(chooseEvictions(files, 100, policy, 20 * MiB)), ['a', 'b'], 'room for 20 MiB more');
    assert.deepEqual(ids(chooseEvictions([fake('x', 200, 0, { busy: 2 })], 100, policy)), [], 'busy files stay, over the limit or not');
  });
});

describe('cache sweeper on a piece store (fake clock)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-gc-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('removes expired files from disk, keeps one being streamed, and reports each eviction', async () => {
    let now = 0;
    const store = new PieceStore(dir, () => now);
    const open = async (id: string) => {
      const tf = await store.open(id, new Layout(1000, 4 * MiB));
      await tf.writeAt(Buffer.alloc(1000, 7), 0);
      tf.markDone(0);
      return tf;
    };
    const a = await open('a');
    const b = await open('b');
    const evicted: string[] = [];
    const gc = new CacheGc(store, { expireMs: 180_000, limitBytes: 10 * MiB }, (tf) => evicted.push(tf.taskId), quiet);
    const reading = orderedStream(b);
    now = 200_000;
    await gc.sweep();
    assert.deepEqual(evicted, ['a']);
    assert.equal(existsSync(a.path), false);
    assert.equal(store.get('b'), b, 'a file with an open stream stays');
    const chunks: Buffer[] = [];
    for await (const c of reading) chunks.push(c as Buffer);
    assert.equal(Buffer.concat(chunks).length, 1000);
    now = 200_000 + 180_000;
    await gc.sweep();
    assert.deepEqual(evicted, ['a', 'b'], 'expiry counts from the end of the last read');
    await store.close();
  });
});

describe('cache bound in a running dfdaemon', () => {
  let dir: string;
  let origin: Origin;
  let sn: Supernode;
  let df: Dfdaemon;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-cache-'));
    origin = await startOrigin('127.0.0.50');
    sn = await supernodeAt(dir, '127.0.0.51');
    df = await dfdaemonAt(dir, '127.0.0.52', [`127.0.0.51:${sn.apiPort}`], 'ratelimit: 1G\ncacheLimit: 12M\n');
  });
  after(async () => {
    await df.close();
    await sn.close();
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('evicts the idle first blob to fit the second, and tells the supernode it no longer serves it', async () => {
    const first = origin.add(randomBlob(8 * MiB));
    const second = origin.add(randomBlob(8 * MiB));
    assert.equal((await getViaProxy('127.0.0.52', df.port, origin.blobUrl(first))).sha256, first);
    const [tf1] = [...df.store.all()];
    assert.equal((await getViaProxy('127.0.0.52', df.port, origin.blobUrl(second))).sha256, second);
    assert.deepEqual([...df.store.all()].map((t) => t.layout.fileLength), [8 * MiB], 'only the second blob is cached');
    assert.equal(existsSync(tf1.path), false);
    assert.equal(metric(await df.metrics.registry.metrics(), 'dfdaemon_cache_evictions_total'), 1);
    await waitFor(() => sn.svc.tasks.get(tf1.taskId)?.sched.peers.get(df.cid)?.down === true, { timeoutMs: 5_000, message: 'peer marked down for the evicted task' });

    // Pulled again while the supernode still has that swarm: the host registers afresh and gets
    // the blob through P2P again, not from the origin (it used to be told it was finished).
    const fromSource = metric(await df.metrics.registry.metrics(), 'dfdaemon_source_bytes_total');
    assert.equal((await getViaProxy('127.0.0.52', df.port, origin.blobUrl(first))).sha256, first);
    assert.equal(metric(await df.metrics.registry.metrics(), 'dfdaemon_source_bytes_total'), fromSource, 'no byte from the origin');
    assert.equal(sn.svc.tasks.get(tf1.taskId)?.sched.peers.get(df.cid)?.down, false);
  });
});
