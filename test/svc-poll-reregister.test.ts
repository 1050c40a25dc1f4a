// A long poll belongs to the registration it was made under. A peer removed while its poll is
// parked (DELETE /api/v1/peers, GC) registers again with the same cid; the old poll, woken
// later, must not be handed pieces: the dfdaemon session that sent it has ended and would drop
// them, and they would fill the new session's download slots until they time out.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { waitFor } from './fixtures/proc.js';
import { randomBlob } from './helpers/origin.js';
import { registerPeer, useOrigin } from './helpers/sn-fixture.js';

interface Answer {
  code: number;
  error?: string;
  data?: unknown;
}

describe('a parked /peer/task of a peer that was removed and registered again', () => {
  const ctx = useOrigin('svc-rereg', '');

  it('answers the old poll "not registered" and gives the pieces to the new one', async () => {
    const url = ctx.origin.blobUrl(ctx.origin.add(randomBlob(2 * 1024 * 1024)));
    // Slow enough that no piece is ready until both polls are parked.
    ctx.origin.rate = 256 * 1024;
    const body = { rawUrl: url, cid: 'p1', ip: '127.0.0.41', port: 15004, path: '/peer/file/p1-blob' };
    const first = await registerPeer(ctx.api, body);
    assert.equal(first.code, 200);
    const poll = async (): Promise<Answer> => {
      const res = await request(`${ctx.api}/peer/task?taskId=${first.taskId}&srcCid=p1&status=700&wait=20000`);
      return (await res.body.json()) as Answer;
    };
    const old = poll();
    await sleep(200);
    const del = await request(`${ctx.api}/api/v1/peers/p1`, { method: 'DELETE' });
    assert.equal(del.statusCode, 204);
    await del.body.dump();
    assert.equal((await registerPeer(ctx.api, body)).code, 200);
    const fresh = poll();
    const [a, b] = await Promise.all([old, fresh]);
    assert.equal(a.code, 500, `the old poll got ${JSON.stringify(a)}`);
    assert.equal(a.error, 'PEER_NOT_REGISTERED');
    assert.equal(b.code, 601, `the new poll got ${JSON.stringify(b)}`);
    assert.ok(Array.isArray(b.data) && b.data.length > 0, 'the new session is handed pieces');
    ctx.origin.rate = 0;
  });

  it('a report with status 702 (the session ended) is applied and hands out nothing', async () => {
    const url = ctx.origin.blobUrl(ctx.origin.add(randomBlob(2 * 1024 * 1024)));
    const body = { rawUrl: url, cid: 'p2', ip: '127.0.0.42', port: 15004, path: '/peer/file/p2-blob' };
    const r = await registerPeer(ctx.api, body);
    assert.equal(r.code, 200);
    await waitFor(() => ctx.sn.cdn.get(r.taskId)?.status === 'SUCCESS');
    const ask = async (status: number): Promise<Answer> =>
      (await (await request(`${ctx.api}/peer/task?taskId=${r.taskId}&srcCid=p2&status=${status}`)).body.json()) as Answer;
    const late = await ask(702);
    assert.equal(late.code, 602, `a 702 got ${JSON.stringify(late)}`);
    const live = await ask(701);
    assert.equal(live.code, 601);
    assert.ok(Array.isArray(live.data) && live.data.length > 0, 'there were pieces to hand out');
  });
});
