// The slow-source rule on its own, with a fake clock: a running fetch is judged against what the
// download's other fetches get at the same time, so the same absolute rate is slow next to fast
// fetches and fine when every fetch gets it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { STALL_MS } from '../dfdaemon/peer/p2p-download.js';
import { READ_TIMEOUT_MS } from '../dfdaemon/peer/piece-client.js';
import { SLOW_SOURCE_DEFAULTS, SlowSource, SlowSourceWatch, type FetchMeter, type SlowSourceOptions } from '../dfdaemon/peer/slow-source.js';

const KiB = 1024;
const PIECE = 256 * KiB;
const TICK = 250;

/** A rate in bytes/s for each running meter; a fast "stream" stands for pieces completing back to back. */
type Feed = Array<[FetchMeter, number]>;

function clockedWatch(opts: Partial<SlowSourceOptions> = {}) {
  let t = 0;
  const cuts: Array<{ src: string; why: string }> = [];
  const watch = new SlowSourceWatch({ checkMs: 0, ...opts }, (m, why) => cuts.push({ src: m.src, why }), () => t);
  return {
    watch,
    cuts,
    /** Advance to `ms`, checking every TICK; each fed meter receives bytes at its rate. */
    run(ms: number, feed: Feed, completions?: { src: string; rate: number }) {
      for (let next = t + TICK; next <= ms; next += TICK) {
        if (completions) {
          // Whole pieces fetched at `rate`, one after another, between two checks.
          const m = watch.start(completions.src, false, PIECE);
          t += (PIECE * 1000) / completions.rate;
          m.bytes = PIECE;
          watch.end(m, true);
        }
        for (const [m, r] of feed) m.bytes = Math.min(m.length, m.bytes + (r * TICK) / 1000);
        t = next;
        watch.check();
      }
    },
  };
}

describe('SlowSourceWatch', () => {
  it('cuts off a peer fetch far below what the others get, after the grace period', () => {
    const c = clockedWatch();
    const slow = c.watch.start('peer-slow', false, PIECE);
    c.run(3_750, [[slow, 32 * KiB]], { src: 'cdnnode:x', rate: 2_560 * KiB });
    assert.equal(slow.signal.aborted, false, 'not before the grace period');
    c.run(4_250, [[slow, 32 * KiB]], { src: 'cdnnode:x', rate: 2_560 * KiB });
    assert.equal(slow.signal.aborted, true);
    assert.ok(slow.signal.reason instanceof SlowSource);
    assert.match((slow.signal.reason as Error).message, /slow source: 32\.0 KiB\/s .* 2\.5 MiB\/s each/);
    assert.deepEqual(
      c.cuts.map((x) => x.src),
      ['peer-slow'],
    );
  });

  it('blames nobody when every fetch is equally slow (a slow downlink), at that same absolute rate', () => {
    const c = clockedWatch();
    const meters = [0, 1, 2, 3].map((i) => c.watch.start(`peer-${i}`, false, PIECE));
    c.run(7_750, meters.map((m) => [m, 32 * KiB] as [FetchMeter, number]));
    assert.deepEqual(c.cuts, []);
    // Nor when the link slows down: the yardstick is now, not the download's past.
    const c2 = clockedWatch();
    const before = c2.watch.start('peer-a', false, PIECE * 100);
    c2.run(5_000, [[before, 5_000 * KiB]]);
    const after = [c2.watch.start('peer-b', false, PIECE), c2.watch.start('peer-c', false, PIECE)];
    c2.run(
      13_000,
      [before, ...after].map((m) => [m, 32 * KiB] as [FetchMeter, number]),
    );
    assert.deepEqual(c2.cuts, []);
    // Nor for TCP's unfairness between flows on one bottleneck.
    const c3 = clockedWatch();
    const uneven = [c3.watch.start('a', false, PIECE * 4), c3.watch.start('b', false, PIECE * 4)];
    c3.run(7_750, [
      [uneven[0], 96 * KiB],
      [uneven[1], 24 * KiB],
    ]);
    assert.deepEqual(c3.cuts, []);
  });

  it('leaves a slow CDN fetch alone (the supernode never blacklists it), but not a dead one', () => {
    const c = clockedWatch();
    const cdn = c.watch.start('cdnnode:x', true, PIECE);
    const fast = c.watch.start('peer-fast', false, PIECE * 100);
    c.run(4_750, [
      [cdn, 8 * KiB],
      [fast, 2_000 * KiB],
    ]);
    assert.equal(cdn.signal.aborted, false);
    const dead = c.watch.start('cdnnode:x', true, PIECE);
    c.run(10_000, [
      [cdn, 8 * KiB],
      [fast, 2_000 * KiB],
    ]);
    assert.equal(dead.signal.aborted, true, 'nothing for 5 s while another fetch delivers');
    assert.match((dead.signal.reason as Error).message, /nothing for 5\.0 s/);
    assert.equal(cdn.signal.aborted, false);
  });

  it('cuts off a fetch that went silent while others deliver', () => {
    const c = clockedWatch();
    // The CDN: left to this rule alone (a peer would be cut off sooner, on its rate).
    const frozen = c.watch.start('cdnnode:x', true, PIECE * 8);
    const live = c.watch.start('peer-live', false, PIECE * 100);
    c.run(1_000, [
      [frozen, 1_000 * KiB],
      [live, 1_000 * KiB],
    ]);
    c.run(5_750, [[live, 1_000 * KiB]]);
    assert.equal(frozen.signal.aborted, false, 'silent for 4.75 s only');
    c.run(6_250, [[live, 1_000 * KiB]]);
    assert.equal(frozen.signal.aborted, true);
    assert.equal(live.signal.aborted, false);
  });

  it('blames nobody when everything went silent together (our own link)', () => {
    const c = clockedWatch();
    const a = c.watch.start('a', false, PIECE);
    const b = c.watch.start('b', false, PIECE);
    c.run(2_000, [
      [a, 64 * KiB],
      [b, 64 * KiB],
    ]);
    c.run(19_000, []);
    assert.deepEqual(c.cuts, []);
  });

  it('with every fetch on one slow source: cuts off only what would miss the piece deadline', () => {
    const c = clockedWatch({ noRefGraceMs: 10_000, pieceDeadlineMs: 120_000 });
    const piece = 2 * 1024 * KiB;
    // Four slots on a 200 kbit/s uplink: ~6 KiB/s each, ~340 s for a piece.
    const trickles = [0, 1, 2, 3].map(() => c.watch.start('peer-trickle', false, piece));
    c.run(9_750, trickles.map((m) => [m, 6 * KiB] as [FetchMeter, number]));
    assert.equal(c.cuts.length, 0, 'equally slow: nothing before noRefGraceMs');
    c.run(10_000, trickles.map((m) => [m, 6 * KiB] as [FetchMeter, number]));
    assert.equal(c.cuts.length, 4);
    assert.match(c.cuts[0].why, /would take over 120 s/);
    // A 2 Mbit/s host with four fetches: ~60 KiB/s each, ~34 s for the piece.
    const c2 = clockedWatch({ noRefGraceMs: 10_000, pieceDeadlineMs: 120_000 });
    const slowLink = [0, 1, 2, 3].map((i) => c2.watch.start(`peer-${i}`, false, piece));
    c2.run(30_000, slowLink.map((m) => [m, 60 * KiB] as [FetchMeter, number]));
    assert.deepEqual(c2.cuts, []);
  });

  it('leaves a relayed fetch (cut-through) to its relay: slow or silent next to the others is no cut', () => {
    const c = clockedWatch();
    const relayed = c.watch.start('peer-relay', false, PIECE);
    relayed.relayed = true;
    c.run(8_000, [[relayed, 8 * KiB]], { src: 'cdnnode:x', rate: 2_560 * KiB });
    assert.equal(relayed.signal.aborted, false, 'its pace is its upstream\'s');
    assert.deepEqual(c.cuts, []);
  });

  it('a fetch that starts after the session closed arms no timer', () => {
    const session = new AbortController();
    const w = new SlowSourceWatch({ checkMs: 1_000 });
    const first = w.start('peer-a', false, PIECE, session.signal);
    w.close();
    session.abort(new Error('session over'));
    w.end(first, false);
    const late = w.start('peer-b', false, PIECE, session.signal);
    assert.ok(late.signal.aborted, 'it ends with the session');
    w.end(late, false);
    assert.equal((w as unknown as { timer?: NodeJS.Timeout }).timer, undefined);
  });

  it('gives up on a piece clearly before the swarm watchdog gives up on the download', () => {
    // A failed piece frees its slot and blames its source; the watchdog sends the whole blob to
    // the origin. The first must come with time to spare for the piece's next source.
    const d = SLOW_SOURCE_DEFAULTS;
    for (const ms of [READ_TIMEOUT_MS, d.graceMs, d.silentMs, d.noRefGraceMs]) {
      assert.ok(ms + 10_000 <= STALL_MS, `${ms} ms leaves under 10 s before the ${STALL_MS} ms watchdog`);
    }
    assert.ok(d.pieceDeadlineMs >= 4 * STALL_MS, 'the blind deadline only catches downloads the watchdog would end anyway');
  });
});
