// GC against what happens while it runs: a host registering for a task the disk GC chose, and
// CDN tasks that only a preheat ever referenced.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { taskId } from '../shared/protocol/taskid.js';
import { dataFile } from '../supernode/cdn/paths.js';
import { waitFor } from './fixtures/proc.js';
import { supernodeAt } from './helpers/cluster.js';
import { randomBlob } from './helpers/origin.js';
import { registerPeer, useOrigin } from './helpers/sn-fixture.js';

const G = 1024 ** 3;
const MIN = 60_000;

describe('GC races', () => {
  const ctx = useOrigin('gc-races');

  it('disk GC skips a victim a host started pulling while earlier victims were being deleted', async () => {
    const { dir, origin } = ctx;
    let clock = 1_000_000;
    const sn = await supernodeAt(dir, '127.0.0.21', '', [], { now: () => clock, freeBytes: async () => 1 * G });
    const home = join(dir, 'sn-home-127.0.0.21');
    const api = `http://127.0.0.21:${sn.apiPort}`;
    try {
      const body = (d: string, cid: string) => ({ rawUrl: origin.blobUrl(d), cid, ip: '127.0.0.22', port: 0 });
      const blobB = origin.add(randomBlob(200_000));
      const a = (await registerPeer(api, body(origin.add(randomBlob(150_000)), 'pa'))).taskId;
      const b = (await registerPeer(api, body(blobB, 'pb'))).taskId;
      await waitFor(() => sn.cdn.get(a)?.status === 'SUCCESS' && sn.cdn.get(b)?.status === 'SUCCESS');
      sn.svc.serviceDown(a, 'pa');
      sn.svc.serviceDown(b, 'pb');
      clock += 10 * MIN;

      // Hold the first deletion open, as a slow disk or a busy LevelDB would.
      let entered!: () => void;
      const inDelete = new Promise<void>((r) => (entered = r));
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const del = sn.cdn.delete.bind(sn.cdn);
      sn.cdn.delete = async (id: string) => {
        if (id === a) {
          entered();
          await gate;
        }
        return del(id);
      };
      const run = sn.gc.runDisk();
      await inDelete;
      assert.equal((await registerPeer(api, body(blobB, 'late'))).code, 200);
      release();
      const d = await run;

      assert.equal(d.kind, 'full');
      assert.equal(existsSync(dataFile(home, a)), false);
      assert.ok(existsSync(dataFile(home, b)), "b's file is kept");
      assert.equal(sn.cdn.get(b)?.status, 'SUCCESS');
      assert.ok(sn.svc.tasks.get(b)?.sched.peers.has('late'), "b's swarm is kept");
      const next = await request(`${api}/peer/task?taskId=${b}&srcCid=late`);
      const j = (await next.body.json()) as { code: number; data?: { range: string }[] };
      assert.equal(j.code, 601, `a piece to fetch, not task-not-found: ${JSON.stringify(j)}`);
      const piece = await request(`http://127.0.0.21:${sn.downloadPort}${sn.downloadPath(b)}`, { headers: { range: `bytes=${j.data![0].range}` } });
      assert.equal(piece.statusCode, 206);
      await piece.body.dump();
      assert.deepEqual(d.victims, [a], 'b was chosen too, but is in use by the time its turn comes');
    } finally {
      await sn.close();
    }
  });

  it('meta GC forgets CDN tasks only a preheat started: failed ones and, as other tasks, finished ones', async () => {
    const { dir, origin } = ctx;
    let clock = 50_000_000;
    let hits = 0;
    const gone = createServer((_req, res) => {
      hits++;
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => gone.listen(0, '127.0.0.1', () => r()));
    const sn = await supernodeAt(dir, '127.0.0.23', '', [], { now: () => clock, freeBytes: async () => 500 * G });
    const api = `http://127.0.0.23:${sn.apiPort}`;
    const preheat = async (url: string): Promise<string> => {
      const res = await request(`${api}/preheats`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'file', url, headers: { Authorization: 'Bearer registry-token' } }),
      });
      assert.equal(res.statusCode, 201);
      const { ID } = (await res.body.json()) as { ID: string };
      return waitFor(async () => {
        const v = (await (await request(`${api}/preheats/${ID}`)).body.json()) as { status: string };
        return v.status === 'SUCCESS' || v.status === 'FAILED' ? v.status : undefined;
      });
    };
    try {
      const missing = `http://127.0.0.1:${(gone.address() as AddressInfo).port}/files/missing.bin`;
      const failedId = taskId(missing);
      assert.equal(await preheat(missing), 'FAILED');
      assert.equal(hits, 1);
      assert.equal(sn.cdn.get(failedId)?.status, 'SOURCE_ERROR');

      const d = origin.add(randomBlob(120_000));
      const okUrl = origin.blobUrl(d);
      const okId = taskId(okUrl);
      assert.equal(await preheat(okUrl), 'SUCCESS');

      clock += 2 * MIN;
      assert.deepEqual(sn.gc.runMeta().expire, [], 'not idle for taskExpireTime (3m) yet');
      assert.ok(sn.cdn.get(failedId));
      clock += 2 * MIN;
      const expired = sn.gc.runMeta().expire;
      assert.equal(sn.cdn.get(failedId), undefined, 'the failed task, and the token in its headers, are gone');
      assert.equal(sn.cdn.get(okId), undefined, 'the finished one leaves memory too');
      assert.deepEqual(expired.sort(), [failedId, okId].sort());
      assert.ok(sn.cdn.diskEntries().some((e) => e.taskId === okId), 'its file stays, for disk GC to weigh');

      assert.equal(await preheat(missing), 'FAILED');
      assert.equal(hits, 2, 'a later preheat asks the origin again');
      const sent = origin.served.get(d);
      const r = await registerPeer(api, { rawUrl: okUrl, cid: 'puller', ip: '127.0.0.24', port: 0 });
      assert.equal(r.code, 200);
      await waitFor(() => sn.cdn.get(okId)?.status === 'SUCCESS');
      assert.equal(origin.served.get(d), sent, 'a pull uses the preheated file');
    } finally {
      await sn.close();
      gone.closeAllConnections();
      await new Promise((r) => gone.close(r));
    }
  });
});
