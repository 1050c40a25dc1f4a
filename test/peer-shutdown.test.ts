// dfdaemon's close() (SIGTERM): a download failing over must not register the task again once
// the daemon closes, the service-down must cover what registered while it closed, and blob
// responses already running get a short grace period instead of being cut at once.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDfdaemon, type Dfdaemon } from '../dfdaemon/daemon.js';
import { loadDfdaemonConfig } from '../shared/config/dfdaemon.js';
import { createLogger } from '../shared/log/index.js';
import { WRAP_OVERHEAD } from '../shared/protocol/pieces.js';
import { startFakeStock, type FakeStock } from './helpers/peer-fake-stock.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { getViaProxy } from './helpers/proxy-get.js';

const PIECE = 256 * 1024;

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; !cond(); await sleep(20)) if (Date.now() > end) throw new Error('condition not met in time');
}

describe('dfdaemon close()', () => {
  let dir: string;
  let origin: Origin;
  const fakes: FakeStock[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-peer-close-'));
    origin = await startOrigin();
  });
  after(async () => {
    for (const f of fakes) await f.close();
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A blob of ten slowly served pieces behind a fake stock supernode, and a dfdaemon using it. */
  async function setup(name: string, drainMs: number, pieceDelayMs: number) {
    const blob = randomBlob(10 * (PIECE - WRAP_OVERHEAD) - 99);
    const digest = origin.add(blob);
    const url = origin.blobUrl(digest);
    const fake = await startFakeStock({ pieceSize: PIECE, pieceDelayMs, downLimit: 2 });
    fakes.push(fake);
    fake.blobs.set(url, blob);
    const home = join(dir, name);
    await mkdir(home);
    const file = join(home, 'dfdaemon.yml');
    await writeFile(file, `port: 0\nworkHome: ${home}\ndfget_flags: ["--node", "${fake.node}"]\nproxies:\n  - regx: blobs/sha256.*\n`);
    const cfg = loadDfdaemonConfig({ file, defaultFile: null });
    const df: Dfdaemon = await startDfdaemon(cfg, { host: '127.0.0.1', log: createLogger('test', { level: 'silent' }), drainMs });
    return { blob, digest, url, fake, df };
  }

  it('during a failover: no registration once close() has begun', async () => {
    const { url, fake, df } = await setup('failover', 0, 150);
    const pull = getViaProxy('127.0.0.1', df.port, url);
    await until(() => fake.pieceSuc.length >= 1);
    // The supernode goes away: the download loses it and keeps trying to register again.
    fake.opts.down = true;
    await sleep(700);
    const closing = df.close();
    const closedAt = Date.now();
    // And comes back at once, while the daemon is closing.
    fake.opts.down = false;
    await closing;
    await pull;
    // Longer than the failover's retry interval (500 ms).
    await sleep(1_500);
    const late = fake.registrations.filter((r) => r.cid === df.cid && r.at >= closedAt);
    assert.deepEqual(late, [], 'registered again after close() began');
  });

  it('a registration on the wire when close() begins is covered by the service-down', async () => {
    const { url, fake, df } = await setup('late-join', 0, 150);
    const pull = getViaProxy('127.0.0.1', df.port, url);
    await until(() => fake.pieceSuc.length >= 1);
    fake.opts.down = true;
    await sleep(700);
    // Back, but slow to answer registrations: the failover's next one is in flight at close().
    fake.opts.registerDelayMs = 1_000;
    fake.opts.down = false;
    await sleep(600);
    await df.close();
    await pull;
    // Anything a failover still did after close() would show by now.
    await sleep(1_500);
    const joins = fake.registrations.filter((r) => r.cid === df.cid);
    const lastJoin = joins[joins.length - 1];
    assert.ok(lastJoin && joins.length >= 2, 'the failover did register again');
    const downs = fake.serviceDown.filter((d) => d.q.cid === df.cid && d.q.taskId === lastJoin.taskId);
    assert.ok(downs.some((d) => d.at >= lastJoin.at), 'a service-down after the last registration');
  });

  it('a blob response running at close() finishes within the grace period', async () => {
    const { blob, digest, url, fake, df } = await setup('drain', 5_000, 100);
    const pull = getViaProxy('127.0.0.1', df.port, url);
    await until(() => fake.pieceSuc.length >= 1);
    const t0 = Date.now();
    await df.close();
    const r = await pull;
    assert.equal(r.status, 200);
    assert.equal(r.bytes, blob.length, 'the whole blob');
    assert.equal(r.sha256, digest);
    assert.ok(r.complete);
    assert.ok(Date.now() - t0 < 5_000, 'within the grace period');
    assert.equal(origin.requests.get(digest) ?? 0, 0);
  });
});
