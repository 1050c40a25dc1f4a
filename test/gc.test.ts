import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { selectDiskVictims, selectMetaActions, type DiskCandidate } from '../supernode/gc/policy.js';
import { dataFile } from '../supernode/cdn/paths.js';
import { waitFor } from './fixtures/proc.js';
import { supernodeAt } from './helpers/cluster.js';
import { randomBlob } from './helpers/origin.js';
import { registerPeer, useOrigin } from './helpers/sn-fixture.js';

const G = 1024 ** 3;
const H = 3_600_000;
const limits = { youngGCThreshold: 100 * G, fullGCThreshold: 5 * G, intervalThreshold: 2 * H, cleanRatio: 1 };

describe('GC policy (pure)', () => {
  const t = (id: string, accessTime: number, interval = 0, bytes = 1, inUse = false): DiskCandidate => ({ taskId: id, accessTime, interval, bytes, inUse });
  const now = 100 * H;

  it('does nothing above youngGCThreshold', () => {
    assert.deepEqual(selectDiskVictims([t('a', 0)], 100 * G + 1, limits, now), { kind: 'none', victims: [] });
  });

  it('removes every idle task at or below fullGCThreshold, never one in use', () => {
    const d = selectDiskVictims([t('a', 0), t('b', now), t('busy', 0, 0, 1, true)], 5 * G, limits, now);
    assert.equal(d.kind, 'full');
    assert.deepEqual(d.victims.sort(), ['a', 'b']);
  });

  it('young GC takes ceil(n * cleanRatio / 10): irregular oldest first, regular largest last', () => {
    const tasks = [
      t('old', 1 * H),
      t('older', 0),
      t('regular-big', now - H, 2 * H, 500),
      t('regular-small', now - H, 2 * H, 5),
      t('lapsed', now - 10 * H, 1 * H),
    ];
    const order = selectDiskVictims(tasks, 50 * G, { ...limits, cleanRatio: 10 }, now).victims;
    assert.deepEqual(order, ['older', 'old', 'lapsed', 'regular-big', 'regular-small']);
    assert.deepEqual(selectDiskVictims(tasks, 50 * G, limits, now).victims, ['older'], 'ceil(5 * 1 / 10) = 1');
    assert.deepEqual(selectDiskVictims(tasks, 50 * G, { ...limits, cleanRatio: 3 }, now).victims, ['older', 'old']);
  });

  it('young GC leaves a task accessed within youngMinIdleMs; full GC does not', () => {
    const tasks = [t('just-done', now - 10_000), t('old', now - 10 * H)];
    const l = { ...limits, cleanRatio: 10, youngMinIdleMs: 180_000 };
    assert.deepEqual(selectDiskVictims(tasks, 50 * G, l, now).victims, ['old']);
    assert.deepEqual(selectDiskVictims(tasks, 5 * G, l, now).victims.sort(), ['just-done', 'old']);
  });

  it('meta GC expires idle tasks after taskExpireTime and drops peers down longer than peerGCDelay', () => {
    const d = selectMetaActions(
      [
        { taskId: 'idle', accessedAt: 0, inUse: false, peers: [] },
        { taskId: 'busy', accessedAt: 0, inUse: true, peers: [{ cid: 'gone', down: true, downAt: 0 }, { cid: 'recent', down: true, downAt: 170_000 }] },
        { taskId: 'fresh', accessedAt: 100_000, inUse: false, peers: [] },
      ],
      { taskExpireTime: 180_000, peerGCDelay: 180_000 },
      180_000,
    );
    assert.deepEqual(d.expire, ['idle']);
    assert.deepEqual(d.removePeers, [{ taskId: 'busy', cid: 'gone' }]);
  });
});

describe('GC on a running supernode, driven by an injected clock and disk', () => {
  const ctx = useOrigin('gc');

  it('deletes exactly the chosen task files and keeps tasks a peer is downloading', async () => {
    const { dir, origin } = ctx;
    let clock = 1_000_000;
    let free = 200 * G;
    const sn = await supernodeAt(dir, '127.0.0.1', '', [], { now: () => clock, freeBytes: async () => free });
    const home = join(dir, 'sn-home-127.0.0.1');
    const api = `http://127.0.0.1:${sn.apiPort}`;
    try {
      const reg = async (d: string, cid: string) => (await registerPeer(api, { rawUrl: origin.blobUrl(d), cid, ip: '127.0.0.11', port: 0 })).taskId;
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) {
        clock += H;
        ids.push(await reg(origin.add(randomBlob(100_000 + i)), `peer${i}`));
      }
      await waitFor(() => ids.every((id) => sn.cdn.get(id)?.status === 'SUCCESS'));
      // Every peer finished except peer3, which is still downloading ids[3].
      for (let i = 0; i < 3; i++) {
        const res = await request(`${api}/peer/task?taskId=${ids[i]}&srcCid=peer${i}&status=700`);
        await res.body.dump();
        const e = sn.svc.tasks.get(ids[i])!;
        for (let n = 0; n < e.sched.pieceCount; n++) sn.svc.report(ids[i], `peer${i}`, { range: `${n * e.cdn.pieceSize}-${n * e.cdn.pieceSize + e.cdn.layout!.piece(n).contentLen + 4}`, result: 501, dstCid: e.sched.cdnCid });
      }
      assert.equal((await sn.gc.runDisk()).kind, 'none', '200 GiB free is above youngGCThreshold');
      free = 50 * G;
      const young = await sn.gc.runDisk();
      assert.deepEqual(young.victims, [ids[0]], 'young GC takes the least recently used idle task');
      assert.ok(young.freedBytes > 100_000);
      assert.equal(existsSync(dataFile(home, ids[0])), false);
      free = 1 * G;
      const full = await sn.gc.runDisk();
      assert.deepEqual(full.victims.sort(), [ids[1], ids[2]].sort());
      assert.ok(existsSync(dataFile(home, ids[3])), 'a task a peer is downloading survives full GC');
      const metrics = await sn.metrics.registry.metrics();
      assert.match(metrics, /supernode_gc_runs_total\{kind="disk-full"\} 1/);
    } finally {
      await sn.close();
    }
  });

  it('a peer silent for peerExpireTime stops pinning its task; idle peers and old 404s are forgotten', async () => {
    const { dir, origin } = ctx;
    let clock = 9_000_000;
    const sn = await supernodeAt(dir, '127.0.0.3', '', [], { now: () => clock, freeBytes: async () => 500 * G });
    const api = `http://127.0.0.3:${sn.apiPort}`;
    try {
      const d = origin.add(randomBlob(300_000));
      const body = (cid: string) => ({ rawUrl: origin.blobUrl(d), cid, ip: '127.0.0.13', port: 0 });
      const id = (await registerPeer(api, body('ghost'))).taskId;
      await registerPeer(api, body('seed'));
      await waitFor(() => sn.cdn.get(id)?.status === 'SUCCESS');
      // 'seed' completes and then has no reason to call again; 'ghost' never calls again.
      const e = sn.svc.tasks.get(id)!;
      for (let n = 0; n < e.sched.pieceCount; n++) {
        const p = e.cdn.layout!.piece(n);
        sn.svc.report(id, 'seed', { range: `${p.start}-${p.end}`, result: 501, dstCid: e.sched.cdnCid });
      }
      assert.notEqual((await registerPeer(api, { rawUrl: origin.blobUrl('f'.repeat(64)), cid: 'x', ip: '127.0.0.13', port: 0 })).code, 200);
      assert.equal(sn.cdn.rememberedFailures, 1);
      clock += 2 * 60_000;
      sn.gc.runMeta();
      assert.equal(e.sched.peers.get('ghost')?.down, true, 'silent and incomplete: marked down');
      assert.equal(e.sched.peers.get('seed')?.down, false, 'silent but complete: left alone');
      clock += 2 * 60_000;
      assert.ok(sn.gc.runMeta().expire.includes(id), 'no longer pinned by the vanished peer');
      assert.equal(sn.svc.peers.get('ghost'), undefined, 'a peer with no task, idle past taskExpireTime, is forgotten');
      assert.equal(sn.cdn.rememberedFailures, 0, 'the 404 is forgotten after failAccessInterval');
    } finally {
      await sn.close();
    }
  });

  it('a peer polling a task whose length is not known yet is alive, not silent', async () => {
    const { dir } = ctx;
    let clock = 20_000_000;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // No content-length: the CDN learns the length only at the end, and peers are told to wait.
    const origin = createServer((_req, res) => {
      res.writeHead(200);
      res.write(Buffer.alloc(5 * 1024 * 1024, 1));
      void gate.then(() => res.end());
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
    const sn = await supernodeAt(dir, '127.0.0.4', '', [], { now: () => clock, freeBytes: async () => 500 * G });
    const api = `http://127.0.0.4:${sn.apiPort}`;
    try {
      const url = `http://127.0.0.1:${(origin.address() as AddressInfo).port}/chunked`;
      const id = (await registerPeer(api, { rawUrl: url, cid: 'poller', ip: '127.0.0.14', port: 0 })).taskId;
      for (let i = 0; i < 5; i++) {
        clock += 30_000;
        const res = await request(`${api}/peer/task?taskId=${id}&srcCid=poller`);
        assert.equal(((await res.body.json()) as { code: number }).code, 602);
        sn.gc.runMeta();
      }
      assert.equal(sn.svc.tasks.get(id)!.sched.peers.get('poller')!.down, false, 'it called every 30 s');
    } finally {
      release();
      await sn.close();
      origin.closeAllConnections();
      await new Promise((r) => origin.close(r));
    }
  });

  it('meta GC forgets an idle swarm but keeps its file, which a later request reuses', async () => {
    const { dir, origin } = ctx;
    let clock = 5_000_000;
    const sn = await supernodeAt(dir, '127.0.0.2', '', [], { now: () => clock, freeBytes: async () => 500 * G });
    const api = `http://127.0.0.2:${sn.apiPort}`;
    try {
      const d = origin.add(randomBlob(300_000));
      const body = (cid: string) => ({ rawUrl: origin.blobUrl(d), cid, ip: '127.0.0.12', port: 0 });
      const id = (await registerPeer(api, body('m1'))).taskId;
      await waitFor(() => sn.cdn.get(id)?.status === 'SUCCESS');
      sn.svc.serviceDown(id, 'm1');
      clock += 2 * 60_000;
      assert.deepEqual(sn.gc.runMeta().expire, [], 'not yet idle for taskExpireTime (3m)');
      clock += 2 * 60_000;
      assert.deepEqual(sn.gc.runMeta().expire, [id]);
      assert.equal(sn.svc.tasks.has(id), false);
      const sent = origin.served.get(d);
      assert.equal((await registerPeer(api, body('m2'))).code, 200);
      await waitFor(() => sn.cdn.get(id)?.status === 'SUCCESS');
      assert.equal(origin.served.get(d), sent, 'served from the kept file');
    } finally {
      await sn.close();
    }
  });
});
