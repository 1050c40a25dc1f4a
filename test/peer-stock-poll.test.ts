// The /peer/task queries and the pause a stock supernode gets (dfdaemon/peer/stock-poll.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { stockQuery, WaitBackoff } from '../dfdaemon/peer/stock-poll.js';
import type { WirePiece } from '../dfdaemon/peer/supernode-wire.js';

const piece = (n: number): WirePiece => ({ range: `${n * 100}-${n * 100 + 99}`, pieceNum: n, pieceSize: 100, pieceMd5: 'x:100', cid: 'cdnnode:sn~t', peerIp: '127.0.0.1', peerPort: 8001, path: '/d' });

describe('stock /peer/task queries', () => {
  it('700 until a piece succeeded; after that a poll re-reports the last success as 503, never a 701 without a range', () => {
    assert.deepEqual(stockQuery('t', 'c', undefined, undefined), { taskId: 't', srcCid: 'c', status: 700 });
    const q = stockQuery('t', 'c', undefined, piece(3));
    assert.deepEqual(q, { taskId: 't', srcCid: 'c', status: 701, range: '300-399', result: 503, dstCid: 'cdnnode:sn~t' });
  });

  it('a report: 503 once /peer/piece/suc took the piece, 501 if it did not, 500 for a failure', () => {
    assert.equal(stockQuery('t', 'c', { piece: piece(1), ok: true, recorded: true }, undefined).result, 503);
    assert.equal(stockQuery('t', 'c', { piece: piece(1), ok: true, recorded: false }, undefined).result, 501);
    const fail = stockQuery('t', 'c', { piece: piece(1), ok: false }, piece(0));
    assert.deepEqual(fail, { taskId: 't', srcCid: 'c', status: 701, range: '100-199', result: 500, dstCid: 'cdnnode:sn~t' });
  });

  it("dfget's back-off: 50-100 ms, doubling to 800-1600 ms, and back to the start on reset", () => {
    for (const r of [0, 0.999]) {
      const b = new WaitBackoff(() => r);
      const waits = Array.from({ length: 7 }, () => b.next());
      const lows = [50, 100, 200, 400, 800, 800, 800];
      waits.forEach((w, i) => assert.ok(w >= lows[i] && w < 2 * lows[i], `wait ${i}: ${w}`));
      b.reset();
      assert.ok(b.next() < 100);
    }
  });
});
