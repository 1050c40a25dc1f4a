import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { addPeer, applyReport, markHeld, newTask, schedule, cdnPieceReady, cdnFinished, type SchedulerLimits } from '../supernode/scheduler/index.js';
import { randomBlob } from './helpers/origin.js';
import { schedCtx, STOCK_LIMITS } from './helpers/sched.js';
import { registerPeer, useOrigin } from './helpers/sn-fixture.js';

const MiB = 1024 * 1024;

interface Piece {
  range: string;
  pieceNum: number;
  cid: string;
}

describe('scheduling limits hold exactly under concurrent peers (real supernode over HTTP)', () => {
  const ctx = useOrigin('limits', '  peerDownLimit: 3\n  peerUpLimit: 2\n');

  it('peerDownLimit per downloader, peerUpLimit per source, the CDN cap per task', async () => {
    const { origin, api } = ctx;
    const d = origin.add(randomBlob(16 * 4 * MiB));
    const peers = Array.from({ length: 8 }, (_, i) => `lim-${i}`);
    let taskId = '';
    for (const cid of peers) {
      taskId = (await registerPeer(api, { rawUrl: origin.blobUrl(d), cid, ip: '127.0.0.14', port: 0, dfdaemon: true })).taskId;
    }
    const down = new Map<string, number>();
    const up = new Map<string, number>();
    const maxDown = new Map<string, number>();
    const maxUp = new Map<string, number>();
    const bump = (m: Map<string, number>, mx: Map<string, number>, k: string, by: number) => {
      const v = (m.get(k) ?? 0) + by;
      m.set(k, v);
      mx.set(k, Math.max(mx.get(k) ?? 0, v));
    };
    // Each simulated peer asks, "downloads" each piece for a while, then reports it. A report is
    // itself a /peer/task call whose answer may assign pieces, so those are run too.
    const run = async (cid: string) => {
      const inflight = new Set<Promise<void>>();
      const ask = async (q: string) => (await (await request(`${api}/peer/task?srcCid=${cid}&taskId=${taskId}&${q}`)).body.json()) as { code: number; data?: Piece[] };
      const take = (j: { code: number; data?: Piece[] }) => {
        for (const p of j.code === 601 ? (j.data ?? []) : []) {
          bump(down, maxDown, cid, 1);
          bump(up, maxUp, p.cid, 1);
          const job = (async () => {
            await sleep(30 + Math.random() * 30);
            bump(down, maxDown, cid, -1);
            bump(up, maxUp, p.cid, -1);
            take(await ask(`status=701&range=${p.range}&result=501&dstCid=${encodeURIComponent(p.cid)}`));
          })();
          inflight.add(job);
          void job.finally(() => inflight.delete(job));
        }
      };
      let q = 'status=700&wait=2000';
      for (;;) {
        const j = await ask(q);
        q = 'status=701&wait=2000';
        if (j.code === 600) break;
        take(j);
        if (j.code !== 601 || (j.data ?? []).length === 0) {
          if (inflight.size > 0) await Promise.race(inflight);
        }
      }
      await Promise.all(inflight);
    };
    await Promise.all(peers.map(run));
    const cdnCid = [...maxUp.keys()].find((k) => k.startsWith('cdnnode:'))!;
    for (const cid of peers) assert.ok((maxDown.get(cid) ?? 0) <= 3, `${cid} ran ${maxDown.get(cid)} pieces at once`);
    assert.equal(Math.max(...maxDown.values()), 3, 'peerDownLimit is reached, not just respected');
    const peerUps = [...maxUp.entries()].filter(([k]) => k !== cdnCid).map(([, v]) => v);
    assert.ok(peerUps.length > 0, 'peers served peers');
    assert.ok(Math.max(...peerUps) <= 2, `a peer served ${Math.max(...peerUps)} at once`);
    assert.equal(Math.max(...peerUps), 2, 'peerUpLimit is reached');
    assert.ok((maxUp.get(cdnCid) ?? 0) <= 3, 'the CDN serves at most peerDownLimit pieces of one task at once');
    assert.equal(origin.requests.get(d), 1);
  });
});

describe('a long-poll whose peer hung up (real supernode over HTTP)', () => {
  const ctx = useOrigin('hangup', '');

  it('is not handed the piece it was waiting for', async () => {
    const { origin, api } = ctx;
    // 8 MiB in 256 KiB pieces at 1 MiB/s: the first piece exists only after ~0.25 s.
    const d = origin.add(randomBlob(8 * MiB));
    origin.rate = MiB;
    try {
      const reg = (cid: string) => registerPeer(api, { rawUrl: origin.blobUrl(d), cid, ip: '127.0.0.15', port: 0, dfdaemon: true });
      const { taskId } = await reg('gone');
      await reg('stays');
      const poll = (cid: string, signal?: AbortSignal) => request(`${api}/peer/task?srcCid=${cid}&taskId=${taskId}&status=700&wait=5000`, { signal });
      // 'gone' parks first, so it would be asked first when piece 0 arrives; it hangs up before.
      const ac = new AbortController();
      const gone = poll('gone', ac.signal).catch((err: Error) => err);
      await sleep(50);
      ac.abort();
      assert.ok((await gone) instanceof Error);
      const j = (await (await poll('stays')).body.json()) as { code: number; data?: Piece[] };
      // Had 'gone' been assigned piece 0, the CDN would count a copy on its way to it and hold
      // piece 0 back from 'stays' for its grace period; 'stays' would get a later piece first.
      assert.equal(j.code, 601);
      assert.deepEqual(j.data?.map((p) => p.pieceNum), [0]);
      assert.ok(j.data?.[0].cid.startsWith('cdnnode:'));
    } finally {
      origin.rate = 0;
    }
  });
});

describe('failure knobs (pure scheduler)', () => {
  const limits: SchedulerLimits = { ...STOCK_LIMITS, eliminationLimit: 2, failureCountLimit: 2 };
  const ctx = schedCtx(0, limits);
  const task = () => {
    const t = newTask('t', 'cdn');
    t.pieceCount = 4;
    for (let n = 0; n < 4; n++) cdnPieceReady(t, n);
    cdnFinished(t, true, 4);
    return t;
  };

  it('a peer with eliminationLimit service errors is no source for anyone', () => {
    const t = task();
    const bad = addPeer(t, 'bad', 0);
    for (let n = 0; n < 4; n++) markHeld(t, bad, n);
    for (const r of ['r1', 'r2']) {
      addPeer(t, r, 0);
      const d = schedule(t, r, ctx);
      assert.ok(d.kind === 'pieces' && d.pieces[0].src === 'bad');
      applyReport(t, { cid: r, pieceNum: d.kind === 'pieces' ? d.pieces[0].pieceNum : 0, src: 'bad', ok: false }, limits, 0);
    }
    assert.equal(bad.serviceErrorCount, 2);
    addPeer(t, 'fresh', 0);
    const d = schedule(t, 'fresh', ctx);
    assert.ok(d.kind === 'pieces' && d.pieces.every((p) => p.src === 'cdn'), 'eliminated: even a new requester is not sent to it');
  });

  it('a client with more than failureCountLimit errors gets everything from the supernode', () => {
    const t = task();
    const srcs = ['s1', 's2', 's3'].map((c) => addPeer(t, c, 0));
    // A healthy holder the requester never failed with: it is still not used.
    const good = addPeer(t, 'good', 0);
    for (const s of [...srcs, good]) for (let n = 0; n < 4; n++) markHeld(t, s, n);
    const r = addPeer(t, 'flaky', 0);
    for (const s of srcs) applyReport(t, { cid: 'flaky', pieceNum: 0, src: s.cid, ok: false }, { eliminationLimit: 99 }, 0);
    assert.equal(r.clientErrorCount, 3, 'more than failureCountLimit (2)');
    const d = schedule(t, 'flaky', ctx);
    assert.ok(d.kind === 'pieces' && d.pieces.length === 4 && d.pieces.every((p) => p.src === 'cdn'));
  });
});
