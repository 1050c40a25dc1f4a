// A relay that vanishes (killed, no /peer/service/down) never reports: the failures of the
// fetches relayed from it are excused while its runs go on, so without a cap it stays a
// cut-through source, failing everyone sent to it, until its runs time out.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addPeer, applyReport, cdnPieceReady, newTask, RELAY_CUT_LIMIT, schedule, type Decision, type TaskState } from '../supernode/scheduler/index.js';
import { schedCtx, STOCK_LIMITS } from './helpers/sched.js';

const limits = { ...STOCK_LIMITS, relayDepth: 2, peerDownLimit: 1 };
const ctx = (now: number) => schedCtx(now, limits);
const src = (d: Decision) => (d.kind === 'pieces' ? d.pieces[0].src : d.kind);

/** Pieces at the CDN, its fetch still going; relay-capable peers a..h. */
function swarm(pieces: number): TaskState {
  const t = newTask('t', 'cdn');
  t.pieceCount = pieces;
  for (let n = 0; n < pieces; n++) cdnPieceReady(t, n);
  for (const id of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']) addPeer(t, id, 0, true, true);
  return t;
}

describe('a relay that stops answering (pure)', () => {
  it(`is no longer offered once ${RELAY_CUT_LIMIT} downstreams failed on its run`, () => {
    const t = swarm(1);
    assert.equal(src(schedule(t, 'a', ctx(0))), 'cdn');
    // a goes silent. b and c relay from it and fail; their failures are excused (not blamed).
    for (const [i, id] of ['b', 'c'].entries()) {
      assert.equal(src(schedule(t, id, ctx(10 + i))), 'a');
      const eff = applyReport(t, { cid: id, pieceNum: 0, src: 'a', ok: false }, limits, 20 + i);
      assert.equal(eff.blacklisted, false);
    }
    // Uncapped, d, e, f ... were all sent to a until its run timed out 30 s later.
    for (const id of ['d', 'e']) assert.notEqual(src(schedule(t, id, ctx(100))), 'a', `${id} is not sent to a`);
  });

  it('nor for its other pieces, until it shows a sign of life', () => {
    const t = swarm(2);
    const a = t.peers.get('a')!;
    // a relays both pieces (two CDN copies).
    assert.equal(src(schedule(t, 'a', schedCtx(0, { ...limits, peerDownLimit: 2 }))), 'cdn');
    assert.equal(a.running.size, 2);
    const [p, q] = [...a.running.keys()];
    for (const [i, id] of ['b', 'c'].entries()) {
      t.peers.get(id)!.have[q] = 1; // b and c ask for p only
      assert.equal(src(schedule(t, id, ctx(10 + i))), 'a');
      applyReport(t, { cid: id, pieceNum: p, src: 'a', ok: false }, limits, 20 + i);
    }
    const d = t.peers.get('d')!;
    d.have[p] = 1; // d asks for q, whose run nobody failed on
    assert.equal(src(schedule(t, 'd', ctx(30))), 'wait', 'a is suspect for every piece it relays');
    // a calls (its download slots are full, so it is only told so): it is there after all.
    assert.equal(schedule(t, 'a', schedCtx(40, { ...limits, peerDownLimit: 2 })).kind, 'limited');
    assert.equal(src(schedule(t, 'd', ctx(50))), 'a', 'offered again for the piece no one failed on');
    t.peers.get('e')!.have[q] = 1;
    assert.equal(src(schedule(t, 'e', ctx(60))), 'wait', 'but not for the run two downstreams failed on');
  });
});
