import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TaskReply } from '../supernode/service/types.js';
import { waitFor } from './fixtures/proc.js';
import { supernodeAt } from './helpers/cluster.js';
import { randomBlob } from './helpers/origin.js';
import { registerPeer, useOrigin } from './helpers/sn-fixture.js';

const MIN = 60_000;

describe('peer records on a task that never idles', () => {
  const ctx = useOrigin('svc-peer-gc');

  it('hold about the live peers only: gone ones leave the swarm and the registry', async () => {
    let clock = 50_000_000;
    const sn = await supernodeAt(ctx.dir, '127.0.0.1', '', [], { now: () => clock, freeBytes: async () => 500 * 1024 ** 3 });
    const api = `http://127.0.0.1:${sn.apiPort}`;
    try {
      const rawUrl = ctx.origin.blobUrl(ctx.origin.add(randomBlob(100_000)));
      const killed = new Set<string>();
      const registeredAt = new Map<string, number>();
      let taskId = '';
      /** A peer pulls the whole task, failing on any source that is gone. */
      const pull = async (cid: string) => {
        const r = await registerPeer(api, { rawUrl, cid, ip: '127.0.0.51', port: 15005, path: `/peer/file/${cid}` });
        assert.equal(r.code, 200);
        taskId = r.taskId;
        registeredAt.set(cid, clock);
        await waitFor(() => sn.cdn.get(taskId)?.status === 'SUCCESS');
        let d: TaskReply = await sn.svc.next(taskId, cid, undefined, 0);
        for (let i = 0; d.code !== 600; i++) {
          assert.ok(i < 50 && d.code === 601 && 'data' in d, `${cid}: ${JSON.stringify(d)}`);
          const p = d.data[0];
          d = await sn.svc.next(taskId, cid, { range: p.range, result: killed.has(p.cid) ? 500 : 501, dstCid: p.cid }, 0);
        }
      };
      // One pull a minute for 40 minutes: half end with service/down, half are killed.
      for (let i = 0; i < 40; i++) {
        const cid = `peer-${i}`;
        await pull(cid);
        if (i % 2 === 0) sn.svc.serviceDown(taskId, cid);
        else killed.add(cid);
        clock += MIN;
        if (i % 2 === 1) sn.gc.runMeta();
      }
      const e = sn.svc.tasks.get(taskId)!;
      // Gone peers go within peerGCDelay + taskExpireTime (3 + 3 minutes), plus a GC interval
      // (2 minutes) for each of the two steps.
      const horizon = clock - 10 * MIN;
      const old = (cids: Iterable<string>) => [...cids].filter((c) => registeredAt.get(c)! < horizon);
      assert.deepEqual(old(e.sched.peers.keys()), [], 'scheduler state');
      assert.deepEqual(old(sn.svc.peers.peers.keys()), [], 'peer registry');
      assert.deepEqual(old(e.sched.holders.get(0) ?? []), [], 'holders of piece 0');
      assert.deepEqual(old(e.peers.keys()), [], 'peer addresses');
      assert.ok(sn.svc.peers.peers.size <= 11, `registry: ${sn.svc.peers.peers.size}`);
      // The newest peers are still there.
      assert.ok(e.sched.peers.has('peer-39') && sn.svc.peers.get('peer-39'));
    } finally {
      await sn.close();
    }
  });

  it('a complete peer that keeps serving stays a source', async () => {
    let clock = 90_000_000;
    const sn = await supernodeAt(ctx.dir, '127.0.0.2', '', [], { now: () => clock, freeBytes: async () => 500 * 1024 ** 3 });
    const api = `http://127.0.0.2:${sn.apiPort}`;
    try {
      const rawUrl = ctx.origin.blobUrl(ctx.origin.add(randomBlob(100_000)));
      const reg = (cid: string) => registerPeer(api, { rawUrl, cid, ip: '127.0.0.52', port: 15006, path: `/peer/file/${cid}` });
      const { taskId } = await reg('seed');
      await waitFor(() => sn.cdn.get(taskId)?.status === 'SUCCESS');
      const e = sn.svc.tasks.get(taskId)!;
      const p0 = e.cdn.layout!.piece(0);
      sn.svc.report(taskId, 'seed', { range: `${p0.start}-${p0.end}`, result: 501, dstCid: e.sched.cdnCid });
      for (let i = 0; i < 10; i++) {
        clock += 2 * MIN;
        const cid = `leech-${i}`;
        await reg(cid);
        const d = await sn.svc.next(taskId, cid, undefined, 0);
        assert.ok(d.code === 601 && 'data' in d && d.data[0].cid === 'seed', JSON.stringify(d));
        sn.svc.report(taskId, cid, { range: d.data[0].range, result: 501, dstCid: 'seed' });
        sn.svc.serviceDown(taskId, cid);
        sn.gc.runMeta();
      }
      assert.equal(e.sched.peers.get('seed')?.down, false, 'it served a piece every 2 minutes');
      clock += 3 * MIN;
      sn.gc.runMeta();
      assert.equal(e.sched.peers.get('seed')?.down ?? true, true, 'after serving nobody for taskExpireTime it counts as gone');
    } finally {
      await sn.close();
    }
  });
});
