import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  applyReport,
  cdnFinished,
  cdnPieceReady,
  joinPeer,
  markHeld,
  newTask,
  removePeer,
  schedule,
  type Decision,
  type TaskState,
  type UploadTable,
} from '../supernode/scheduler/index.js';
import { schedCtx, STOCK_LIMITS } from './helpers/sched.js';

const limits = STOCK_LIMITS; // 4 down, 5 up, CDN 4 per task

/** A task whose pieces `holder` holds, sharing `uploads` with the supernode's other tasks. */
function layer(id: string, uploads: UploadTable, pieces: number, done = true): TaskState {
  const t = newTask(id, `cdn-${id}`, uploads);
  t.pieceCount = pieces;
  for (let n = 0; n < pieces; n++) cdnPieceReady(t, n);
  if (done) cdnFinished(t, true, pieces);
  const h = joinPeer(t, 'holder', 0, true, true);
  for (let n = 0; n < pieces; n++) markHeld(t, h, n);
  return t;
}

const srcs = (d: Decision) => (d.kind === 'pieces' ? d.pieces.map((p) => p.src) : []);
const fromHolder = (d: Decision) => srcs(d).filter((s) => s === 'holder').length;

describe('one host upload budget over all its tasks (pure)', () => {
  it('peerUpLimit bounds a holder\'s uploads over every task it serves, and the CDN takes the rest', () => {
    const uploads: UploadTable = new Map();
    const tasks = ['l1', 'l2', 'l3'].map((id) => layer(id, uploads, 8));
    let total = 0;
    let cdn = 0;
    for (const t of tasks) {
      joinPeer(t, 'other', 0, true, true);
      const d = schedule(t, 'other', schedCtx(0));
      assert.equal(d.kind, 'pieces');
      total += fromHolder(d);
      cdn += srcs(d).filter((s) => s === t.cdnCid).length;
    }
    // Counted per task, each layer saw room for 4 more: 12 uploads from one host at once.
    assert.equal(total, limits.peerUpLimit, 'the holder serves peerUpLimit pieces over all layers');
    assert.equal(cdn, 12 - limits.peerUpLimit, 'the CDN sends the overflow');
    assert.equal(uploads.get('holder')!.runs.size, limits.peerUpLimit);
    // Layer 3's free set still lists the holder (only its own releases reach it): a skip, not an upload.
    assert.ok(tasks[2].free.has('holder'));
  });

  it('a slot another task releases is offered to the next task', () => {
    const uploads: UploadTable = new Map();
    const [a, b] = ['a', 'b'].map((id) => layer(id, uploads, 8));
    joinPeer(a, 'x', 0);
    joinPeer(b, 'y', 0);
    const da = schedule(a, 'x', schedCtx(0, { ...limits, peerDownLimit: 5 }));
    assert.equal(fromHolder(da), 5);
    b.cdnLoad = limits.cdnTaskLoadLimit; // the CDN is at its cap for b
    assert.equal(schedule(b, 'y', schedCtx(0)).kind, 'wait', 'the holder is full with a\'s uploads');
    const first = da.kind === 'pieces' ? da.pieces[0].pieceNum : -1;
    applyReport(a, { cid: 'x', pieceNum: first, src: 'holder', ok: true }, limits, 1);
    assert.deepEqual(srcs(schedule(b, 'y', schedCtx(1))), ['holder']);
  });

  it('while the CDN still fetches, a holder full with other tasks\' uploads leaves the piece to the CDN', () => {
    const uploads: UploadTable = new Map();
    const a = layer('a', uploads, 8, false);
    const b = layer('b', uploads, 8, false);
    joinPeer(a, 'x', 0);
    joinPeer(b, 'y', 0);
    assert.equal(fromHolder(schedule(a, 'x', schedCtx(0, { ...limits, peerDownLimit: 5 }))), 5);
    // No release in b would wake a wait for the holder: b's pieces come from the CDN (one copy
    // each, as it seeds) rather than waiting on an upload budget other tasks hold.
    const db = schedule(b, 'y', schedCtx(0));
    assert.ok(db.kind === 'pieces' && db.pieces.every((p) => p.src === b.cdnCid), JSON.stringify(db));
  });

  it('uploads of a task dropped mid-fetch stop counting after the piece timeout', () => {
    const uploads: UploadTable = new Map();
    const a = layer('a', uploads, 8);
    joinPeer(a, 'x', 0);
    assert.equal(fromHolder(schedule(a, 'x', schedCtx(0, { ...limits, peerDownLimit: 5 }))), 5);
    // Task a is forgotten (meta GC, a bad CDN copy) with its runs going: nobody releases them.
    const b = layer('b', uploads, 8);
    joinPeer(b, 'y', 0);
    assert.equal(fromHolder(schedule(b, 'y', schedCtx(1_000))), 0);
    removePeer(b, 'y');
    joinPeer(b, 'y', 0);
    assert.equal(fromHolder(schedule(b, 'y', schedCtx(limits.pieceTimeoutMs))), 4);
  });

  it('a peer leaving a task frees its host\'s slots for the others', () => {
    const uploads: UploadTable = new Map();
    const [a, b] = ['a', 'b'].map((id) => layer(id, uploads, 8));
    joinPeer(a, 'x', 0);
    assert.equal(fromHolder(schedule(a, 'x', schedCtx(0, { ...limits, peerDownLimit: 5 }))), 5);
    removePeer(a, 'x');
    assert.equal(uploads.get('holder')!.runs.size, 0);
    joinPeer(b, 'y', 0);
    assert.equal(fromHolder(schedule(b, 'y', schedCtx(0))), 4);
  });
});
