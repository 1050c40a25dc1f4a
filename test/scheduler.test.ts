import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  addPeer,
  applyReport,
  BUSY_BACKOFF_MS,
  busyWakeIn,
  cdnFinished,
  cdnPieceReady,
  joinPeer,
  markDown,
  markHeld,
  newTask,
  schedule,
  type TaskState,
} from '../supernode/scheduler/index.js';
import { Layout, pieceSizeFor } from '../shared/protocol/pieces.js';
import { schedCtx, STOCK_LIMITS } from './helpers/sched.js';

const limits = STOCK_LIMITS;
const ctx = schedCtx;

function task(pieces: number): TaskState {
  const t = fetching(pieces);
  cdnFinished(t, true, pieces);
  return t;
}

/** Every piece is at the CDN but its fetch from the source has not finished: it seeds. */
function fetching(pieces: number): TaskState {
  const t = newTask('t', 'cdn');
  t.pieceCount = pieces;
  for (let n = 0; n < pieces; n++) cdnPieceReady(t, n);
  return t;
}

describe('scheduler core (pure)', () => {
  it('hands out at most peerDownLimit pieces, then reports the peer as limited', () => {
    const t = task(10);
    addPeer(t, 'a', 0);
    const d = schedule(t, 'a', ctx());
    assert.equal(d.kind, 'pieces');
    assert.equal(d.kind === 'pieces' && d.pieces.length, 4);
    assert.equal(schedule(t, 'a', ctx()).kind, 'limited');
  });

  it('while fetching, prefers peers that hold a piece and never spends the CDN on a piece a live peer holds', () => {
    const t = fetching(8);
    addPeer(t, 'seed', 0);
    for (let n = 0; n < 8; n++) markHeld(t, t.peers.get('seed')!, n);
    addPeer(t, 'b', 0);
    addPeer(t, 'c', 0);
    const db = schedule(t, 'b', ctx());
    assert.ok(db.kind === 'pieces' && db.pieces.length === 4 && db.pieces.every((p) => p.src === 'seed'), 'b fetches from the seed peer');
    const dc = schedule(t, 'c', ctx());
    // The seed has 4 uploads for b; peerUpLimit 5 leaves one slot. The CDN does not stand in:
    // the seed holds every piece, so c waits for a slot instead of loading the supernode.
    assert.ok(dc.kind === 'pieces' && dc.pieces.length === 1 && dc.pieces[0].src === 'seed');
    assert.equal(t.peers.get('seed')!.load, 5);
    assert.equal(t.cdnLoad, 0);
  });

  it('the CDN seeds each piece once at a time, and caps its load per task', () => {
    const t = fetching(8);
    for (const id of ['p', 'q', 'r']) addPeer(t, id, 0);
    const dp = schedule(t, 'p', ctx(0, { ...limits, peerDownLimit: 2 }));
    assert.ok(dp.kind === 'pieces' && dp.pieces.length === 2 && dp.pieces.every((a) => a.src === 'cdn'));
    const taken = new Set(dp.kind === 'pieces' ? dp.pieces.map((a) => a.pieceNum) : []);
    const dq = schedule(t, 'q', ctx(0, { ...limits, peerDownLimit: 2 }));
    assert.ok(dq.kind === 'pieces' && dq.pieces.every((a) => a.src === 'cdn' && !taken.has(a.pieceNum)), 'q gets other pieces, not a second CDN copy');
    assert.equal(t.cdnLoad, 4);
    assert.equal(schedule(t, 'r', ctx()).kind, 'wait', 'the CDN is at cdnTaskLoadLimit');
  });

  it('after the fetch, the CDN stands in for busy holders, up to its cap, after free ones', () => {
    const t = task(8);
    const seed = addPeer(t, 'seed', 0);
    for (let n = 0; n < 8; n++) markHeld(t, seed, n);
    for (const id of ['b', 'c']) addPeer(t, id, 0);
    const db = schedule(t, 'b', ctx());
    assert.ok(db.kind === 'pieces' && db.pieces.length === 4 && db.pieces.every((p) => p.src === 'seed'), 'a free holder first');
    const dc = schedule(t, 'c', ctx());
    assert.ok(dc.kind === 'pieces' && dc.pieces.length === 4);
    const srcs = dc.kind === 'pieces' ? dc.pieces.map((p) => p.src) : [];
    assert.deepEqual(srcs.filter((s) => s === 'seed').length, 1, 'the seed\'s last upload slot');
    assert.deepEqual(srcs.filter((s) => s === 'cdn').length, 3, 'the CDN for the rest');
    addPeer(t, 'd', 0);
    const dd = schedule(t, 'd', ctx());
    assert.ok(dd.kind === 'pieces' && dd.pieces.length === 1 && dd.pieces[0].src === 'cdn', 'cdnTaskLoadLimit (4) caps it');
  });

  it('orders rarest first', () => {
    const t = task(4);
    for (const id of ['x', 'y']) {
      addPeer(t, id, 0);
      markHeld(t, t.peers.get(id)!, 0);
      markHeld(t, t.peers.get(id)!, 1);
    }
    markHeld(t, t.peers.get('x')!, 2);
    addPeer(t, 'r', 0);
    const d = schedule(t, 'r', ctx(0, { ...limits, peerDownLimit: 1 }));
    assert.ok(d.kind === 'pieces');
    assert.equal(d.kind === 'pieces' && d.pieces[0].pieceNum, 3, 'piece 3 has no holders but the CDN');
  });

  it('blacklists a failing source for that requester and counts errors', () => {
    const t = task(2);
    addPeer(t, 'bad', 0);
    markHeld(t, t.peers.get('bad')!, 0);
    markHeld(t, t.peers.get('bad')!, 1);
    addPeer(t, 'r', 0);
    const d = schedule(t, 'r', ctx());
    assert.ok(d.kind === 'pieces' && d.pieces[0].src === 'bad');
    const eff = applyReport(t, { cid: 'r', pieceNum: d.kind === 'pieces' ? d.pieces[0].pieceNum : 0, src: 'bad', ok: false }, limits, 1);
    assert.ok(eff.blacklisted);
    assert.equal(t.peers.get('bad')!.serviceErrorCount, 1);
    assert.equal(t.peers.get('r')!.clientErrorCount, 1);
    const again = schedule(t, 'r', ctx(2));
    assert.ok(again.kind === 'pieces' && again.pieces.every((p) => p.src !== 'bad'), 'never the blacklisted peer again');
  });

  it('a source that refused as busy is not blamed, and is no source for that requester for BUSY_BACKOFF_MS', () => {
    const t = fetching(2);
    for (const h of ['a', 'b']) {
      addPeer(t, h, 0);
      for (let n = 0; n < 2; n++) markHeld(t, t.peers.get(h)!, n);
    }
    addPeer(t, 'r', 0);
    const one = { ...limits, peerDownLimit: 1 };
    const only = (d: ReturnType<typeof schedule>) => (d.kind === 'pieces' ? d.pieces[0] : { pieceNum: -1, src: `(${d.kind})` });
    const first = only(schedule(t, 'r', ctx(0, one)));
    assert.ok(first.src === 'a' || first.src === 'b', `a holder first, got ${first.src}`);
    const eff = applyReport(t, { cid: 'r', pieceNum: first.pieceNum, src: first.src, ok: false, busy: true }, limits, 10);
    const r = t.peers.get('r')!;
    assert.equal(eff.blacklisted, false);
    assert.equal(t.peers.get(first.src)!.serviceErrorCount, 0, 'the busy source has no error counted');
    assert.equal(r.clientErrorCount, 0);
    assert.equal(r.blacklist.size, 0);
    assert.equal(t.peers.get(first.src)!.load, 0, 'the run was taken back, freeing its slot');
    assert.equal(r.running.size, 0);
    assert.equal(busyWakeIn(r, 10), BUSY_BACKOFF_MS);
    const second = only(schedule(t, 'r', ctx(10, one)));
    assert.ok(second.src !== first.src && second.src !== 'cdn' && second.pieceNum >= 0, `the other holder next, got ${second.src}`);
    applyReport(t, { cid: 'r', pieceNum: second.pieceNum, src: second.src, ok: false, busy: true }, limits, 20);
    // Both holders refused: while the CDN still seeds, it stands in, as for holders r blacklisted
    // (a holder busy with uploads the supernode does not know of may stay busy for long).
    const third = only(schedule(t, 'r', ctx(30, one)));
    assert.equal(third.src, 'cdn', 'the CDN stands in for holders that refused r as busy');
    applyReport(t, { cid: 'r', pieceNum: third.pieceNum, src: 'cdn', ok: true }, limits, 40);
    // Someone else is not affected by r's back-offs.
    addPeer(t, 'fresh', 40);
    assert.ok(['a', 'b'].includes(only(schedule(t, 'fresh', ctx(40, one))).src), 'another requester still uses the holders');
    const later = only(schedule(t, 'r', ctx(20 + BUSY_BACKOFF_MS, one)));
    assert.ok(later.src === 'a' || later.src === 'b', `a holder again once the back-offs are over, got ${later.src}`);
    assert.equal(busyWakeIn(r, 20 + BUSY_BACKOFF_MS), undefined);
  });

  it('while fetching, the CDN stands in when every live holder is one the requester blacklisted, busy or not', () => {
    const t = fetching(1);
    addPeer(t, 'bad', 0);
    markHeld(t, t.peers.get('bad')!, 0);
    addPeer(t, 'r', 0);
    const first = schedule(t, 'r', ctx());
    assert.ok(first.kind === 'pieces' && first.pieces[0].src === 'bad');
    applyReport(t, { cid: 'r', pieceNum: 0, src: 'bad', ok: false }, limits, 1);
    // Fill the holder's upload slots: it is live but has none free.
    for (let i = 0; i < limits.peerUpLimit; i++) {
      addPeer(t, `o${i}`, 1);
      const d = schedule(t, `o${i}`, ctx(1));
      assert.ok(d.kind === 'pieces' && d.pieces[0].src === 'bad');
    }
    const d = schedule(t, 'r', ctx(3));
    assert.deepEqual(d, { kind: 'pieces', pieces: [{ pieceNum: 0, src: 'cdn' }] }, 'r may never use bad, so waiting for its slot gains nothing');
    // Someone who has not blacklisted it still waits for the holder instead of spending the CDN.
    addPeer(t, 'fresh', 3);
    assert.equal(schedule(t, 'fresh', ctx(3)).kind, 'wait');
  });

  it('never uses a peer marked down', () => {
    const t = task(1);
    addPeer(t, 'gone', 0);
    markHeld(t, t.peers.get('gone')!, 0);
    markDown(t, 'gone', 0);
    addPeer(t, 'r', 0);
    const d = schedule(t, 'r', ctx());
    assert.ok(d.kind === 'pieces' && d.pieces[0].src === 'cdn');
  });

  it('does not take a success for a piece the CDN has not cut as held, so it is never handed out undigested', () => {
    const t = newTask('t', 'cdn');
    t.pieceCount = 4;
    cdnPieceReady(t, 0);
    addPeer(t, 'forger', 0);
    // Nobody assigned piece 2 and the CDN has no record (no digest) of it yet.
    const eff = applyReport(t, { cid: 'forger', pieceNum: 2, src: '', ok: true }, limits, 1);
    assert.equal(eff.held, false);
    assert.equal(t.peers.get('forger')!.held.has(2), false);
    addPeer(t, 'r', 1);
    const d = schedule(t, 'r', ctx(2));
    assert.deepEqual(d, { kind: 'pieces', pieces: [{ pieceNum: 0, src: 'cdn' }] });
    // Once the CDN has cut it, a success is taken as usual.
    cdnPieceReady(t, 2);
    assert.equal(applyReport(t, { cid: 'forger', pieceNum: 2, src: '', ok: true }, limits, 3).held, true);
  });

  it('a peer that went down and registers again starts over, holding nothing', () => {
    const t = task(2);
    const a = joinPeer(t, 'a', 0);
    for (let n = 0; n < 2; n++) markHeld(t, a, n);
    assert.equal(schedule(t, 'a', ctx(1)).kind, 'finish');
    // It evicted the file and said so; pulling the blob again, it registers with the same cid.
    markDown(t, 'a', 2);
    const back = joinPeer(t, 'a', 3);
    assert.equal(back.down, false);
    assert.equal(back.held.size, 0);
    assert.equal(t.holderCount[0], 0);
    const d = schedule(t, 'a', ctx(4));
    assert.ok(d.kind === 'pieces' && d.pieces.length === 2, `got ${JSON.stringify(d)}`);
    // A registration of a live peer keeps what it holds.
    const b = joinPeer(t, 'b', 5);
    markHeld(t, b, 0);
    assert.equal(joinPeer(t, 'b', 6).held.has(0), true);
  });

  it('finishes a peer that holds every piece and takes back expired assignments', () => {
    const t = task(2);
    addPeer(t, 'a', 0);
    const d = schedule(t, 'a', ctx(0));
    assert.ok(d.kind === 'pieces' && d.pieces.length === 2);
    assert.equal(t.cdnLoad, 2);
    schedule(t, 'a', ctx(limits.pieceTimeoutMs + 1));
    for (let n = 0; n < 2; n++) applyReport(t, { cid: 'a', pieceNum: n, src: 'cdn', ok: true }, limits, 1);
    assert.equal(schedule(t, 'a', ctx(2)).kind, 'finish');
  });

  it('counts copies on their way as holders, so simultaneous askers spread over pieces', () => {
    const t = task(2);
    const src = addPeer(t, 'src', 0);
    // One holder of both pieces; without counting a's copy, b would pick the piece nearest the
    // running one, which is a's.
    markHeld(t, src, 0);
    markHeld(t, src, 1);
    addPeer(t, 'a', 0);
    addPeer(t, 'b', 0);
    const one = { ...limits, peerDownLimit: 1 };
    const da = schedule(t, 'a', ctx(0, one));
    assert.ok(da.kind === 'pieces' && da.pieces[0].src === 'src');
    const first = da.kind === 'pieces' ? da.pieces[0].pieceNum : -1;
    const db = schedule(t, 'b', ctx(0, one));
    assert.ok(db.kind === 'pieces' && db.pieces[0].src === 'src');
    assert.notEqual(db.kind === 'pieces' && db.pieces[0].pieceNum, first, 'b is not queued behind a on the same piece');
  });

  it('a CDN copy in flight holds the piece back for 2 s, then it gets company', () => {
    const t = fetching(1);
    addPeer(t, 'a', 0);
    addPeer(t, 'b', 0);
    const da = schedule(t, 'a', ctx(0));
    assert.ok(da.kind === 'pieces' && da.pieces[0].src === 'cdn');
    assert.equal(schedule(t, 'b', ctx(1_900)).kind, 'wait', 'a young CDN copy: b waits for a to finish');
    const db = schedule(t, 'b', ctx(2_100));
    assert.ok(db.kind === 'pieces' && db.pieces[0].src === 'cdn', 'a copy 2 s old that was never reported gets company');
  });
});

describe('cut-through relays (pure)', () => {
  const relayLimits = { ...limits, relayDepth: 2, peerDownLimit: 1 };
  const rctx = (now = 0) => ctx(now, relayLimits);

  /** One piece, at the CDN, still fetching: the first asker gets the CDN's copy. */
  function oneNewPiece(): TaskState {
    const t = fetching(1);
    for (const id of ['a', 'b', 'c', 'd']) addPeer(t, id, 0, true, true);
    const da = schedule(t, 'a', rctx());
    assert.ok(da.kind === 'pieces' && da.pieces[0].src === 'cdn');
    return t;
  }

  it('a peer still receiving a piece is the source for the next asker, and chains stop at relayDepth', () => {
    const t = oneNewPiece();
    const db = schedule(t, 'b', rctx());
    assert.ok(db.kind === 'pieces' && db.pieces[0].src === 'a', 'b relays from a while a receives');
    assert.equal(t.peers.get('b')!.running.get(0)!.depth, 1);
    assert.equal(t.peers.get('a')!.load, 1);
    // c prefers the shallowest relay (a, depth 0) while a has upload slots.
    const dc = schedule(t, 'c', rctx());
    assert.ok(dc.kind === 'pieces' && dc.pieces[0].src === 'a');
    // With a full, d may chain on b or c (depth 1), but nothing deeper than relayDepth 2.
    t.peers.get('a')!.load = relayLimits.peerUpLimit;
    const dd = schedule(t, 'd', rctx());
    assert.ok(dd.kind === 'pieces' && (dd.pieces[0].src === 'b' || dd.pieces[0].src === 'c'));
    assert.equal(t.peers.get('d')!.running.get(0)!.depth, 2);
    addPeer(t, 'e', 0, true, true);
    for (const id of ['b', 'c']) t.peers.get(id)!.load = relayLimits.peerUpLimit;
    assert.equal(schedule(t, 'e', rctx()).kind, 'wait', 'd is at depth 2 = relayDepth and may not pass it on');
  });

  it('never relays from stock peers, nor with relayDepth 0', () => {
    const t = fetching(1);
    addPeer(t, 'stock', 0, false, false);
    addPeer(t, 'b', 0, true, true);
    assert.ok(schedule(t, 'stock', rctx()).kind === 'pieces');
    assert.equal(schedule(t, 'b', rctx()).kind, 'wait', 'a stock dfget cannot pass on what it is still receiving');
    const u = oneNewPiece();
    assert.equal(schedule(u, 'b', ctx(0, { ...relayLimits, relayDepth: 0 })).kind, 'wait');
  });

  it('a relay whose own fetch failed is not blamed for its downstream, and leaves the relay list', () => {
    const t = oneNewPiece();
    const db = schedule(t, 'b', rctx());
    assert.ok(db.kind === 'pieces' && db.pieces[0].src === 'a');
    applyReport(t, { cid: 'a', pieceNum: 0, src: 'cdn', ok: false }, relayLimits, 0);
    const eff = applyReport(t, { cid: 'b', pieceNum: 0, src: 'a', ok: false }, relayLimits, 0);
    assert.equal(eff.blacklisted, false);
    assert.equal(t.peers.get('a')!.serviceErrorCount, 0);
    assert.equal(t.peers.get('b')!.blacklist.size, 0);
    assert.deepEqual(t.relays.get(0), undefined, 'neither a nor b relays piece 0 any more');
    assert.equal(t.peers.get('a')!.load, 0);
  });

  it('a relay that got the piece whole and still failed its downstream is counted as usual', () => {
    const t = oneNewPiece();
    schedule(t, 'b', rctx());
    applyReport(t, { cid: 'a', pieceNum: 0, src: 'cdn', ok: true }, relayLimits, 0);
    const eff = applyReport(t, { cid: 'b', pieceNum: 0, src: 'a', ok: false }, relayLimits, 0);
    assert.equal(eff.blacklisted, true);
    assert.equal(t.peers.get('a')!.serviceErrorCount, 1);
  });

  it('relays only fill the slots whole copies leave, at most half of peerDownLimit', () => {
    const t = fetching(5);
    const l = { ...limits, relayDepth: 2, peerDownLimit: 4 };
    for (const id of ['a', 'seed', 'b']) addPeer(t, id, 0, true, true);
    // a takes 4 CDN first copies (pieces it now relays); seed holds the fifth whole.
    const da = schedule(t, 'a', ctx(0, l));
    assert.ok(da.kind === 'pieces' && da.pieces.length === 4 && da.pieces.every((p) => p.src === 'cdn'));
    const relayed = new Set(da.kind === 'pieces' ? da.pieces.map((p) => p.pieceNum) : []);
    const fifth = [0, 1, 2, 3, 4].find((n) => !relayed.has(n))!;
    markHeld(t, t.peers.get('seed')!, fifth);
    const db = schedule(t, 'b', ctx(0, l));
    assert.ok(db.kind === 'pieces');
    assert.deepEqual(db.pieces[0], { pieceNum: fifth, src: 'seed' }, 'the piece someone holds whole comes first');
    assert.equal(db.pieces.filter((p) => p.src === 'a').length, 2, 'then relays, and only peerDownLimit / 2 of them');
    assert.equal(db.pieces.length, 3);
  });

  it('never makes two peers relay one piece from each other after a failure', () => {
    const l = { ...limits, relayDepth: 3, peerDownLimit: 1, peerUpLimit: 1 };
    const c = ctx(0, l);
    const t = fetching(1);
    for (const id of ['seed', 'a', 'b']) addPeer(t, id, 0, true, true);
    addPeer(t, 'x', 0, false, false);
    markHeld(t, t.peers.get('seed')!, 0);
    schedule(t, 'a', c); // a <- seed
    schedule(t, 'b', c); // b <- a, relayed
    t.cdnLoad = l.cdnTaskLoadLimit;
    applyReport(t, { cid: 'a', pieceNum: 0, src: 'seed', ok: false }, l, 0); // a's fetch fails, so b's is cut
    schedule(t, 'x', c); // x takes the seed's only slot
    const da = schedule(t, 'a', c);
    assert.ok(!(da.kind === 'pieces' && da.pieces[0].src === 'b'), 'a may not relay from b, whose fetch relays a\'s failed one');
    applyReport(t, { cid: 'b', pieceNum: 0, src: 'a', ok: false }, l, 0);
    schedule(t, 'b', c);
    const run = (id: string) => t.peers.get(id)!.running.get(0);
    assert.ok(!(run('a')?.src === 'b' && run('b')?.src === 'a'), 'no mutual wait');
  });

  it('a relay that fails a downstream while its run goes on is not picked again, and is counted once the run gets the piece', () => {
    const t = oneNewPiece();
    const db = schedule(t, 'b', rctx());
    assert.ok(db.kind === 'pieces' && db.pieces[0].src === 'a');
    // a is still fetching the piece (no report from it), yet b's fetch from it failed: a 503 or a crash,
    // or a's own fetch failing with a's report still on its way.
    const eff = applyReport(t, { cid: 'b', pieceNum: 0, src: 'a', ok: false }, relayLimits, 0);
    assert.equal(eff.blacklisted, false, 'not judged yet');
    assert.equal(schedule(t, 'b', rctx()).kind, 'wait', 'b is not sent back to a');
    applyReport(t, { cid: 'a', pieceNum: 0, src: 'cdn', ok: true }, relayLimits, 0);
    assert.equal(t.peers.get('a')!.serviceErrorCount, 1, 'a got the piece, so failing b was its fault');
    assert.equal(t.peers.get('b')!.blacklist.get('a'), 1);
  });

  it('a downstream whose failure report beats its relay\'s own failure report is excused', () => {
    const t = oneNewPiece();
    schedule(t, 'b', rctx());
    const eff = applyReport(t, { cid: 'b', pieceNum: 0, src: 'a', ok: false }, relayLimits, 0);
    applyReport(t, { cid: 'a', pieceNum: 0, src: 'cdn', ok: false }, relayLimits, 0);
    assert.equal(eff.blacklisted, false);
    assert.equal(t.peers.get('a')!.serviceErrorCount, 0);
    assert.equal(t.peers.get('b')!.blacklist.size, 0);
  });

  it('a report for a run the supernode took back does not end the run that replaced it', () => {
    const t = fetching(1);
    for (const id of ['s1', 's2', 'b']) addPeer(t, id, 0, true, true);
    markHeld(t, t.peers.get('s1')!, 0);
    schedule(t, 'b', rctx(0)); // b <- s1
    t.peers.get('s1')!.load = relayLimits.peerUpLimit;
    markHeld(t, t.peers.get('s2')!, 0);
    const d2 = schedule(t, 'b', rctx(limits.pieceTimeoutMs)); // b's run expired: b <- s2
    assert.ok(d2.kind === 'pieces' && d2.pieces[0].src === 's2');
    applyReport(t, { cid: 'b', pieceNum: 0, src: 's1', ok: false }, relayLimits, limits.pieceTimeoutMs + 1);
    assert.equal(t.peers.get('b')!.running.get(0)?.src, 's2');
    assert.equal(t.peers.get('s2')!.load, 1);
  });

  it('a whole copy beats a relay', () => {
    const t = oneNewPiece();
    addPeer(t, 'seed', 0, true, true);
    markHeld(t, t.peers.get('seed')!, 0);
    const db = schedule(t, 'b', rctx());
    assert.ok(db.kind === 'pieces' && db.pieces[0].src === 'seed');
    assert.equal(t.peers.get('b')!.running.get(0)!.depth, 0);
  });
});

describe('piece size', () => {
  const KiB = 1024;
  const MiB = 1024 * KiB;
  it('cuts a blob into at least 64 pieces of 256 KiB or more, under Dragonfly\'s ceiling', () => {
    const cases: [number, number][] = [
      [0, 256 * KiB],
      [1, 256 * KiB],
      [2 * MiB, 256 * KiB],
      [32 * MiB, 512 * KiB],
      [64 * MiB, 1 * MiB],
      [128 * MiB, 2 * MiB],
      [200 * MiB, 2 * MiB],
      [256 * MiB, 4 * MiB],
      [512 * MiB, 4 * MiB],
      [-1, 4 * MiB],
    ];
    for (const [len, want] of cases) assert.equal(pieceSizeFor(len), want, `${len} bytes`);
    // Above 200 MiB Dragonfly's ceiling grows (1 GiB: 12 MiB) and 64 pieces want 16 MiB.
    assert.equal(pieceSizeFor(1024 * MiB), 8 * MiB, 'powers of two under the 12 MiB ceiling');
    assert.equal(new Layout(64 * MiB, pieceSizeFor(64 * MiB)).count, 65, 'wrapping overhead spills one piece');
  });
});
