import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  addPeer,
  applyReport,
  cdnPieceReady,
  joinPeer,
  markHeld,
  newTask,
  schedule,
  type PeerState,
  type SchedulerLimits,
  type TaskState,
} from '../supernode/scheduler/index.js';

/** Stock Dragonfly limits: 4 down, 5 up, 5 to eliminate, 5 client failures. */
const limits: SchedulerLimits = {
  peerDownLimit: 4,
  peerUpLimit: 5,
  eliminationLimit: 5,
  failureCountLimit: 5,
  cdnTaskLoadLimit: 4,
  pieceTimeoutMs: 30_000,
  relayDepth: 0,
};
const ctx = (now: number, l: SchedulerLimits = limits) => ({ limits: l, now, rand: () => 0.5 });

/** Every piece is at the CDN, its fetch from the source still going (the CDN only seeds). */
function fetching(pieces: number): TaskState {
  const t = newTask('t', 'cdn');
  t.pieceCount = pieces;
  for (let n = 0; n < pieces; n++) cdnPieceReady(t, n);
  return t;
}

function assign(t: TaskState, cid: string, now: number, l: SchedulerLimits = limits): { pieceNum: number; src: string }[] {
  addPeer(t, cid, now);
  const d = schedule(t, cid, ctx(now, l));
  assert.equal(d.kind, 'pieces', `${cid}: ${JSON.stringify(d)}`);
  return d.kind === 'pieces' ? d.pieces : [];
}

/** The bookkeeping the hot path reads agrees with the state it summarises. */
function checkInvariants(t: TaskState): void {
  for (const p of t.peers.values()) {
    let load = 0;
    for (const q of t.peers.values()) for (const r of q.running.values()) if (r.src === p.cid) load++;
    assert.equal(p.load, load, `${p.cid}.load is the number of runs from it`);
    const live = !p.down && p.serviceErrorCount < t.elimLimit;
    // isLive is kept for holders only (it feeds liveHolders).
    if (p.held.size > 0) assert.equal(p.isLive, live, `${p.cid}.isLive`);
    assert.equal(p.isFree, live && p.held.size > 0 && p.load < t.upLimit, `${p.cid}.isFree`);
    assert.equal(t.free.has(p.cid), p.isFree, `${p.cid} in task.free`);
  }
  let cdn = 0;
  for (const q of t.peers.values()) for (const r of q.running.values()) if (r.src === t.cdnCid) cdn++;
  assert.equal(t.cdnLoad, cdn, 'cdnLoad is the number of runs from the CDN');
  for (let n = 0; n < Math.max(t.pieceCount, 0); n++) {
    const holders = [...t.peers.values()].filter((p) => p.held.has(n));
    assert.equal(t.liveHolders[n] ?? 0, holders.filter((p) => p.isLive).length, `liveHolders[${n}]`);
    assert.equal(t.freeHolders[n] ?? 0, holders.filter((p) => p.isFree).length, `freeHolders[${n}]`);
  }
}

function seed(t: TaskState, cid: string, now: number): PeerState {
  const p = joinPeer(t, cid, now);
  for (let n = 0; n < t.pieceCount; n++) markHeld(t, p, n);
  return p;
}

describe('scheduler bookkeeping under failures and re-registrations (pure)', () => {
  it('a success from an eliminated source clears its errors and makes it a source again', () => {
    // A network blip: five fetches from the seeder fail, one handed out before them succeeds.
    const l = { ...limits, peerDownLimit: 1, peerUpLimit: 6, cdnTaskLoadLimit: 0 };
    const t = fetching(8);
    const s = seed(t, 'seed', 0);
    const runs = ['d1', 'd2', 'd3', 'd4', 'd5', 'd6'].map((cid, i) => ({ cid, ...assign(t, cid, i, l)[0] }));
    assert.ok(runs.every((r) => r.src === 'seed'));
    for (const r of runs.slice(0, 5)) applyReport(t, { cid: r.cid, pieceNum: r.pieceNum, src: 'seed', ok: false }, l, 10);
    assert.equal(s.serviceErrorCount, 5);
    assert.equal(s.isLive, false, 'eliminated');
    checkInvariants(t);
    applyReport(t, { cid: 'd6', pieceNum: runs[5].pieceNum, src: 'seed', ok: true }, l, 11);
    assert.equal(s.serviceErrorCount, 0);
    assert.equal(s.isLive, true, 'live again');
    assert.equal(s.isFree, true);
    checkInvariants(t);
    const next = assign(t, 'd7', 12, l);
    assert.equal(next[0].src, 'seed');
  });
});
