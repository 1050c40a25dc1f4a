import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  addPeer,
  applyReport,
  cdnPieceReady,
  joinPeer,
  markDown,
  markHeld,
  newTask,
  schedule,
  type PeerState,
  type SchedulerLimits,
  type TaskState,
} from '../supernode/scheduler/index.js';
import { schedCtx, STOCK_LIMITS } from './helpers/sched.js';

const limits = STOCK_LIMITS;
const ctx = schedCtx;

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
    // One task here, so the host's count is this task's (less runs already past the timeout).
    assert.ok(p.host.runs.size <= load, `${p.cid}: no upload outlives its run`);
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

  it('a peer that goes down and registers again under its cid neither sheds the old uploads from its new count nor inherits their failures', () => {
    // The CDN is at its cap, so every source is a peer.
    const l = { ...limits, peerDownLimit: 1, cdnTaskLoadLimit: 0 };
    const t = fetching(8);
    seed(t, 'e', 0);
    const old = ['o1', 'o2', 'o3'].map((cid, i) => ({ cid, ...assign(t, cid, i, l)[0] }));
    assert.ok(old.every((r) => r.src === 'e'));
    assert.equal(t.peers.get('e')!.load, 3);
    // e evicts the file (service/down), then pulls it again with the same cid and gets it back.
    markDown(t, 'e', 5);
    const e = seed(t, 'e', 6);
    assert.equal(e.load, 0);
    checkInvariants(t);
    const fresh = ['n1', 'n2', 'n3', 'n4', 'n5'].map((cid, i) => ({ cid, ...assign(t, cid, 7 + i, l)[0] }));
    assert.ok(fresh.every((r) => r.src === 'e'));
    assert.equal(e.load, 5);
    checkInvariants(t);
    // The old incarnation's uploads fail: nothing of it is taken off, or charged to, the new one.
    for (const r of old) applyReport(t, { cid: r.cid, pieceNum: r.pieceNum, src: 'e', ok: false }, l, 20);
    assert.equal(e.load, 5, 'five uploads still run from e');
    assert.equal(e.serviceErrorCount, 0);
    checkInvariants(t);
    addPeer(t, 'm1', 21);
    assert.equal(schedule(t, 'm1', ctx(21, l)).kind, 'wait', 'e is at peerUpLimit');
    // The new uploads end: the count goes back to 0, and their failures do count.
    for (const r of fresh.slice(0, 2)) applyReport(t, { cid: r.cid, pieceNum: r.pieceNum, src: 'e', ok: false }, l, 22);
    assert.equal(e.serviceErrorCount, 2);
    for (const r of fresh.slice(2)) applyReport(t, { cid: r.cid, pieceNum: r.pieceNum, src: 'e', ok: true }, l, 22);
    assert.equal(e.load, 0);
    checkInvariants(t);
  });

  it('a failure report is charged to its source only for a run the supernode sent the reporter on', () => {
    const l = { ...limits, cdnTaskLoadLimit: 0 };
    const t = fetching(8);
    const victim = seed(t, 'v', 0);
    addPeer(t, 'x', 0);
    // x was never sent to v: five made-up failures do not take v out of service.
    for (let i = 0; i < 5; i++) {
      const eff = applyReport(t, { cid: 'x', pieceNum: i, src: 'v', ok: false }, l, 1 + i);
      assert.equal(eff.eliminated, false);
    }
    assert.equal(victim.serviceErrorCount, 0);
    assert.equal(victim.isLive, true);
    assert.equal(t.peers.get('x')!.clientErrorCount, 5, 'the reporter counts them against itself');
    assert.equal(t.peers.get('x')!.blacklist.get('v'), 5, 'and keeps off v');
    // A made-up success does not clear a real failure either.
    const [run] = assign(t, 'h', 10, l);
    applyReport(t, { cid: 'h', pieceNum: run.pieceNum, src: 'v', ok: false }, l, 11);
    assert.equal(victim.serviceErrorCount, 1);
    applyReport(t, { cid: 'x', pieceNum: 7, src: 'v', ok: true }, l, 12);
    assert.equal(victim.serviceErrorCount, 1);
    // A run the supernode took back unreported still counts when its failure comes in late.
    const [late] = assign(t, 'y', 20, l);
    assert.equal(late.src, 'v');
    addPeer(t, 'z', 20 + l.pieceTimeoutMs);
    schedule(t, 'z', ctx(20 + l.pieceTimeoutMs, l)); // sweeps y's run
    assert.equal(t.peers.get('y')!.running.size, 0);
    applyReport(t, { cid: 'y', pieceNum: late.pieceNum, src: 'v', ok: false }, l, 21 + l.pieceTimeoutMs);
    assert.equal(victim.serviceErrorCount, 2);
    // Once: the same report again is made up.
    applyReport(t, { cid: 'y', pieceNum: late.pieceNum, src: 'v', ok: false }, l, 22 + l.pieceTimeoutMs);
    assert.equal(victim.serviceErrorCount, 2);
    checkInvariants(t);
  });
});
