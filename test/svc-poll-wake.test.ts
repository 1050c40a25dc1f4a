// Parked /peer/task polls at scale. Every report, piece and departure wakes the task's parked
// polls; with hundreds of peers parked, re-creating each poll's promise, timer and abort
// listener on every wake was most of the supernode's CPU (reviewer K: 256 simulated peers kept a
// core 76% busy, and fresh connections waited 10-70 s to be accepted). A wake that finds nothing
// now costs one look at the scheduler, and a burst of changes in one turn wakes each poll once.
import assert from 'node:assert/strict';
import { setMaxListeners } from 'node:events';
import { describe, it } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { newTask } from '../supernode/scheduler/index.js';
import { waitFor } from './fixtures/proc.js';
import { randomBlob } from './helpers/origin.js';
import { registerPeer, useOrigin } from './helpers/sn-fixture.js';

const PARKED = 60;

/** setTimeout calls made from the long poll's module while `fn` runs. */
async function pollTimers(fn: () => Promise<void>): Promise<number> {
  const real = globalThis.setTimeout;
  let n = 0;
  globalThis.setTimeout = ((...args: Parameters<typeof real>) => {
    if (/task-poll\.js/.test(new Error().stack ?? '')) n++;
    return real(...args);
  }) as typeof real;
  try {
    await fn();
  } finally {
    globalThis.setTimeout = real;
  }
  return n;
}

describe('parked /peer/task polls', () => {
  const ctx = useOrigin('svc-wake', '');

  it('keep one timer each through hundreds of wakes, and all get pieces once there are some', async () => {
    // Slow enough that the CDN has no piece while the polls park and the swarm churns.
    ctx.origin.rate = 16 * 1024;
    const url = ctx.origin.blobUrl(ctx.origin.add(randomBlob(2 * 1024 * 1024)));
    const cids = Array.from({ length: PARKED + 1 }, (_, i) => `wake-${i}`);
    let taskId = '';
    for (const [i, cid] of cids.entries()) {
      const r = await registerPeer(ctx.api, { rawUrl: url, cid, ip: `127.0.0.${10 + (i % 200)}`, port: 15000 + i, path: `/peer/file/${cid}` });
      assert.equal(r.code, 200);
      taskId = r.taskId;
    }
    const svc = ctx.sn.svc;
    assert.equal(ctx.sn.cdn.get(taskId)?.pieces.length, 0, 'no piece yet: every poll parks');
    const hangUp = new AbortController();
    // One signal for every parked poll here; a real poll has its own request's.
    setMaxListeners(PARKED + 1, hangUp.signal);
    const answered: { code: number; data?: unknown }[] = [];
    let polls: Promise<void>[] = [];
    const timers = await pollTimers(async () => {
      polls = cids.slice(0, PARKED).map(async (cid) => void answered.push((await svc.next(taskId, cid, undefined, 30_000, hangUp.signal)) as { code: number; data?: unknown }));
      await tick();
      // 200 changes, each in its own turn as separate requests would be: the last peer going
      // down and up again wakes every parked poll each time, and none of them can be served.
      for (let i = 0; i < 200; i++) {
        svc.serviceDown(taskId, cids[PARKED]);
        await tick();
        await tick();
      }
    });
    assert.ok(timers <= 2 * PARKED, `${timers} timers for ${PARKED} parked polls (one per wake would be ${200 * PARKED})`);
    assert.equal(answered.length, 0, 'nothing could be handed out');
    // The pieces reach the CDN: parked polls are woken and handed them (the CDN seeds each piece
    // once; these peers never fetch, so the others stay parked).
    ctx.origin.rate = 0;
    await waitFor(() => ctx.sn.cdn.get(taskId)?.status === 'SUCCESS');
    await waitFor(() => answered.length > 0, { timeoutMs: 5_000 });
    for (const a of answered) assert.equal(a.code, 601, JSON.stringify(a));
    assert.ok(answered.every((a) => Array.isArray(a.data) && a.data.length > 0));
    hangUp.abort();
    await Promise.all(polls);
  });

  it('a burst of changes in one turn wakes each parked poll once', async () => {
    ctx.origin.rate = 16 * 1024;
    const url = ctx.origin.blobUrl(ctx.origin.add(randomBlob(2 * 1024 * 1024)));
    const cids = ['burst-0', 'burst-1', 'burst-2'];
    let taskId = '';
    for (const [i, cid] of cids.entries()) taskId = (await registerPeer(ctx.api, { rawUrl: url, cid, ip: '127.0.0.61', port: 15100 + i, path: `/peer/file/${cid}` })).taskId;
    const svc = ctx.sn.svc;
    const entry = svc.tasks.get(taskId)!;
    const poll = svc.next(taskId, cids[0], undefined, 30_000);
    await tick();
    assert.equal(entry.waiters.size, 1);
    // Count the looks: the parked poll's check is the one waiter.
    const [check] = [...entry.waiters];
    let looks = 0;
    entry.waiters.clear();
    entry.waiters.add(() => {
      looks++;
      check();
    });
    for (let i = 0; i < 50; i++) svc.serviceDown(taskId, cids[1 + (i % 2)]);
    await tick();
    await tick();
    assert.equal(looks, 1, '50 changes in one turn, one look');
    entry.waiters.clear();
    entry.waiters.add(check);
    ctx.origin.rate = 0;
    const a = (await poll) as { code: number };
    assert.equal(a.code, 601);
  });

  it('look once more at their deadline: a swarm replaced meanwhile answers "not registered", not "wait"', async () => {
    ctx.origin.rate = 16 * 1024;
    const url = ctx.origin.blobUrl(ctx.origin.add(randomBlob(2 * 1024 * 1024)));
    const r = await registerPeer(ctx.api, { rawUrl: url, cid: 'late-0', ip: '127.0.0.62', port: 15200, path: '/peer/file/late-0' });
    const svc = ctx.sn.svc;
    const poll = svc.next(r.taskId, 'late-0', undefined, 400);
    await tick();
    // As attach() does for a retried CDN download, and with no event to wake the poll.
    const entry = svc.tasks.get(r.taskId)!;
    entry.sched = newTask(r.taskId, entry.sched.cdnCid);
    const a = (await poll) as { code: number; error?: string };
    assert.equal(a.error, 'PEER_NOT_REGISTERED', JSON.stringify(a));
    ctx.origin.rate = 0;
  });

  it('a scheduler error in a wake pass fails that poll, not the process', async () => {
    ctx.origin.rate = 16 * 1024;
    const url = ctx.origin.blobUrl(ctx.origin.add(randomBlob(2 * 1024 * 1024)));
    let taskId = '';
    for (const [i, cid] of ['err-0', 'err-1'].entries()) taskId = (await registerPeer(ctx.api, { rawUrl: url, cid, ip: '127.0.0.63', port: 15300 + i, path: `/peer/file/${cid}` })).taskId;
    const svc = ctx.sn.svc;
    const poll = svc.next(taskId, 'err-0', undefined, 30_000).then(
      () => undefined,
      (err: Error) => err,
    );
    await tick();
    svc.serviceDown(taskId, 'err-1');
    // The wake pass runs after this turn; only it meets the broken lookup.
    const get = svc.tasks.get;
    svc.tasks.get = () => {
      throw new Error('scheduler state broken');
    };
    try {
      await tick();
    } finally {
      svc.tasks.get = get;
    }
    assert.match(String(await poll), /scheduler state broken/);
    ctx.origin.rate = 0;
  });
});
