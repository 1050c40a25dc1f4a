import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { waitFor } from './fixtures/proc.js';
import { metric } from './helpers/cluster.js';
import { randomBlob } from './helpers/origin.js';
import { registerPeer, useOrigin } from './helpers/sn-fixture.js';

interface Answer {
  code: number;
  data?: Array<{ range: string; cid: string; pieceNum: number }>;
}

describe('/peer/piece/error and the /peer/task report that follows it', () => {
  const ctx = useOrigin('svc-pe', '');

  const get = async (path: string, q: Record<string, string | number>) => {
    const res = await request(`${ctx.api}${path}?${new URLSearchParams(Object.entries(q).map(([k, v]) => [k, String(v)]))}`);
    return { status: res.statusCode, body: (await res.body.json()) as Answer };
  };

  it('one failed piece counts once, as stock dfget reports it twice', async () => {
    const d = ctx.origin.add(randomBlob(200_000));
    const reg = (cid: string) => registerPeer(ctx.api, { rawUrl: ctx.origin.blobUrl(d), cid, ip: '127.0.0.21', port: 15001, path: `/peer/file/${cid}` });
    const { taskId } = await reg('seed');
    await waitFor(() => ctx.sn.cdn.get(taskId)?.status === 'SUCCESS');
    const e = ctx.sn.svc.tasks.get(taskId)!;
    const range = (() => {
      const p = e.cdn.layout!.piece(0);
      return `${p.start}-${p.end}`;
    })();
    assert.equal((await get('/peer/piece/suc', { taskId, cid: 'seed', dstCid: e.sched.cdnCid, pieceRange: range })).body.code, 611);

    await reg('r');
    const a = await get('/peer/task', { taskId, srcCid: 'r', status: 700 });
    assert.equal(a.body.code, 601);
    assert.equal(a.body.data?.[0].cid, 'seed', 'the piece comes from the peer that holds it');

    // Stock dfget after an md5 mismatch: /peer/piece/error, then result=500 with its next /peer/task.
    const pe = await get('/peer/piece/error', { taskId, range, srcCid: 'r', dstCid: 'seed', dstIp: '127.0.0.21', errorType: 'FILE_MD5_NOT_MATCH', realMd5: 'x', expectedMd5: 'y' });
    assert.deepEqual([pe.status, pe.body.code], [200, 200]);
    await get('/peer/task', { taskId, srcCid: 'r', status: 701, range, result: 500, dstCid: 'seed' });

    const seed = e.sched.peers.get('seed')!;
    const r = e.sched.peers.get('r')!;
    assert.equal(seed.serviceErrorCount, 1);
    assert.equal(r.clientErrorCount, 1);
    assert.equal(r.blacklist.get('seed'), 1);
    const text = await ctx.sn.metrics.registry.metrics();
    assert.equal(metric(text, 'supernode_piece_failures_total', { source: 'peer' }), 1);
    assert.equal(metric(text, 'supernode_blacklist_events_total'), 1);

    // FILE_NOT_EXIST comes with an empty range: still accepted.
    const empty = await get('/peer/piece/error', { taskId, range: '', srcCid: 'r', dstCid: 'seed', errorType: 'FILE_NOT_EXIST' });
    assert.deepEqual([empty.status, empty.body.code], [200, 200]);
    assert.equal(seed.serviceErrorCount, 1);
  });
});
