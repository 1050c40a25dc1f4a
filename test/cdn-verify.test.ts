// The CDN's own integrity checks, on a Cdn built directly: the registration's md5 (spec §3: "the
// task fails on an md5 mismatch") and recheckPiece, which the service calls when peers say a
// supernode piece is bad.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Cdn } from '../supernode/cdn/cdn.js';
import type { CdnTask } from '../supernode/cdn/cdn-task.js';
import { LevelMetaStore } from '../supernode/cdn/meta-store.js';
import { dataFile, partFile } from '../supernode/cdn/paths.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';

const idOf = (s: string) => createHash('sha256').update(s).digest('hex');

function ended(t: CdnTask): Promise<void> {
  if (t.status !== 'RUNNING' && t.status !== 'WAITING') return Promise.resolve();
  return new Promise((r) => t.once('end', () => r()));
}

describe('CDN integrity checks', () => {
  let dir = '';
  let home = '';
  let origin: Origin;
  let cdn: Cdn;
  const newCdn = async () => {
    const c = new Cdn({ homeDir: home, failAccessIntervalMs: 180_000, now: Date.now, log: pino({ level: 'silent' }), store: new LevelMetaStore(home) });
    await c.restore();
    return c;
  };
  const req = (d: string, extra: { expectMd5?: string } = {}) => ({ taskId: idOf(d + (extra.expectMd5 ?? '')), url: origin.blobUrl(d), headers: {}, insecure: false, rootCAs: [], ...extra });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-cdn-verify-'));
    home = join(dir, 'home');
    origin = await startOrigin();
    cdn = await newCdn();
  });
  after(async () => {
    await cdn.close();
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('fails the task when the content does not have the registration md5', async () => {
    const blob = randomBlob(600_000);
    const d = origin.add(blob);
    const bad = cdn.ensure(req(d, { expectMd5: 'f'.repeat(32) }));
    await ended(bad);
    assert.equal(bad.status, 'FAILED');
    assert.equal(bad.failure?.code, 'SOURCE_CORRUPT');
    assert.match(bad.failure?.message ?? '', /^md5 [0-9a-f]{32} does not match f{32}$/);
    assert.equal(existsSync(partFile(home, bad.taskId)), false, 'nothing half-verified is left');
    assert.equal(existsSync(dataFile(home, bad.taskId)), false);
    // The right md5, in any case, passes.
    const good = cdn.ensure(req(d, { expectMd5: createHash('md5').update(blob).digest('hex').toUpperCase() }));
    await ended(good);
    assert.equal(good.status, 'SUCCESS');
  });

  it('recheckPiece: ok when intact; corrupt drops the task everywhere and the next request refetches', async () => {
    const d = origin.add(randomBlob(1024 * 1024 + 123));
    const t = cdn.ensure(req(d));
    await ended(t);
    assert.equal(t.status, 'SUCCESS');
    assert.ok(t.layout!.count >= 4);
    assert.equal(await cdn.recheckPiece(t.taskId, 2), 'ok');
    assert.equal(await cdn.recheckPiece(t.taskId, t.layout!.count), 'unknown', 'no such piece');
    assert.equal(await cdn.recheckPiece(idOf('nothing'), 0), 'unknown', 'no such task');

    // One byte of piece 2's content flipped on disk.
    const fh = await open(dataFile(home, t.taskId), 'r+');
    const at = t.layout!.piece(2).start + 1000;
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0] ^= 0xff;
    await fh.write(b, 0, 1, at);
    await fh.close();
    const first = cdn.recheckPiece(t.taskId, 2);
    assert.equal(cdn.recheckPiece(t.taskId, 2), first, 'concurrent checks of a piece share one');
    const other = cdn.recheckPiece(t.taskId, 1);
    assert.equal(await first, 'corrupt');
    assert.equal(await other, 'unknown', 'queued behind the check that dropped the task');
    assert.equal(cdn.get(t.taskId), undefined);
    assert.equal(existsSync(dataFile(home, t.taskId)), false);
    assert.ok(!cdn.diskEntries().some((e) => e.taskId === t.taskId));

    const sent = origin.served.get(d)!;
    const again = cdn.ensure(req(d));
    assert.notEqual(again, t);
    await ended(again);
    assert.equal(again.status, 'SUCCESS');
    assert.equal(again.bytesFromSource, 1024 * 1024 + 123, 'fetched from the origin, not restored');
    assert.equal(origin.served.get(d), 2 * sent);
    assert.equal(await cdn.recheckPiece(again.taskId, 2), 'ok');

    // Metadata is gone too: a fresh CDN on this homeDir knows only the refetched task.
    await cdn.close();
    cdn = await newCdn();
    assert.ok(cdn.diskEntries().some((e) => e.taskId === again.taskId));
  });

  it('recheckPiece: missing when the file is gone; unknown while the task is running', async () => {
    const d = origin.add(randomBlob(700_000));
    const t = cdn.ensure(req(d));
    await ended(t);
    await rm(dataFile(home, t.taskId));
    assert.equal(await cdn.recheckPiece(t.taskId, 0), 'missing');
    assert.equal(cdn.get(t.taskId), undefined);

    origin.rate = 256 * 1024;
    try {
      const slow = cdn.ensure(req(origin.add(randomBlob(2 * 1024 * 1024))));
      await slow.ready;
      assert.equal(slow.status, 'RUNNING');
      assert.equal(await cdn.recheckPiece(slow.taskId, 0), 'unknown');
    } finally {
      origin.rate = 0;
    }
  });
});

describe('CDN piece records of cached tasks', () => {
  let dir = '';
  let origin: Origin;
  /** LevelMetaStore, counting what it hands out. */
  class CountingStore extends LevelMetaStore {
    pieceReads: string[] = [];
    loadedPieces = 0;
    override async load() {
      const out = await super.load();
      for (const r of out.values()) this.loadedPieces += r.pieces?.length ?? 0;
      return out;
    }
    override async pieces(taskId: string) {
      this.pieceReads.push(taskId);
      return super.pieces(taskId);
    }
  }
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-cdn-lazy-'));
    origin = await startOrigin();
  });
  after(async () => {
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('are read from the store when a task is asked for again, not held in memory for every cached blob', async () => {
    const home = join(dir, 'home');
    const make = () => {
      const store = new CountingStore(home);
      return { store, cdn: new Cdn({ homeDir: home, failAccessIntervalMs: 180_000, now: Date.now, log: pino({ level: 'silent' }), store }) };
    };
    const first = make();
    await first.cdn.restore();
    const reqs = [1, 2, 3].map(() => {
      const d = origin.add(randomBlob(1024 * 1024 + 77));
      return { taskId: idOf(d), url: origin.blobUrl(d), headers: {}, insecure: false, rootCAs: [] };
    });
    for (const r of reqs) await ended(first.cdn.ensure(r));
    await first.cdn.close();

    const { store, cdn } = make();
    try {
      assert.equal(await cdn.restore(), 3);
      assert.equal(store.loadedPieces, 0, 'a restart loads no piece records');
      assert.deepEqual(store.pieceReads, []);
      const t = cdn.ensure(reqs[0]);
      await ended(t);
      assert.equal(t.status, 'SUCCESS');
      assert.equal(t.bytesFromSource, 0, 'verified from disk');
      assert.deepEqual(store.pieceReads, [reqs[0].taskId], 'only the task asked for');
      // Evicted from memory (maxTasks, meta GC): its records go back to the store, not a map.
      const pieces = t.layout!.count;
      cdn.forget(t.taskId);
      const again = cdn.ensure(reqs[0]);
      await ended(again);
      assert.equal(again.status, 'SUCCESS');
      assert.equal(again.bytesFromSource, 0);
      assert.equal(again.pieces.filter(Boolean).length, pieces);
      assert.deepEqual(store.pieceReads, [reqs[0].taskId, reqs[0].taskId]);
      assert.equal(origin.requests.get(reqs[0].url.split('sha256:')[1]), 1, 'the origin sent it once');
    } finally {
      await cdn.close();
    }
  });
});
