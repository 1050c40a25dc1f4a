/**
 * Judging running piece fetches. The supernode prefers a free holder over the CDN and learns of
 * a bad source only from failed pieces, while a source that is live but slow (a degraded NIC, a
 * saturated uplink) never fails: its bytes trickle past every inactivity timeout, it keeps a
 * download's slots, and the swarm watchdog then sends the whole blob to the origin. So a fetch
 * that is slow next to what this download receives elsewhere is cut off and reported as a
 * failed piece: the supernode blacklists the source for this peer and hands the piece elsewhere.
 *
 * The yardstick is what the download's other fetches get right now, per fetch, not an absolute
 * rate and not its past: when the host's own downlink is slow, or slows down, every fetch is slow
 * alike and nobody is to blame; when it stalls, nobody delivers and nobody is blamed. When every
 * fetch sits on the one slow source there is no yardstick either; then only a fetch that would
 * need several watchdog periods for its piece is cut off, a download that slow would fall back
 * to the origin anyway.
 */

export interface SlowSourceOptions {
  /** Age before a fetch is judged against the others, and the window their rate is taken over. */
  graceMs: number;
  /** A peer fetch below this fraction of the per-fetch rate the others get is slow. */
  fraction: number;
  /** A fetch that received nothing for this long while other fetches received bytes is slow. */
  silentMs: number;
  /** The age before the absolute rule below applies. */
  noRefGraceMs: number;
  /** A fetch that at its rate so far would need longer than this for its piece is slow. */
  pieceDeadlineMs: number;
  /** How often running fetches are judged. */
  checkMs: number;
}

/**
 * All clearly inside the 30 s swarm watchdog (STALL_MS in p2p-download.ts): a slot freed at noRefGraceMs still leaves the
 * piece's new source 20 s. pieceDeadlineMs is four watchdog periods, so with 2 MiB pieces only a
 * fetch below ~17 KB/s is cut off on the absolute rule, while a 2 Mbit/s downlink shared by four
 * fetches gets ~60 KB/s each. A tenth of the others' rate leaves room for TCP's unfairness
 * between flows on one bottleneck, which is a few times at most.
 */
export const SLOW_SOURCE_DEFAULTS: Readonly<SlowSourceOptions> = Object.freeze({
  graceMs: 4_000,
  fraction: 0.1,
  silentMs: 5_000,
  noRefGraceMs: 10_000,
  pieceDeadlineMs: 120_000,
  checkMs: 1_000,
});

/** Below this many bytes in the window, the others' rate is noise (a tiny last piece). */
const MIN_REF_BYTES = 64 * 1024;

/** Why a fetch was cut off; becomes the message of the failed piece's report. */
export class SlowSource extends Error {}

/** Bytes and fetch-time (ms summed over fetches) received between two checks. */
interface Slice {
  at: number;
  bytes: number;
  busy: number;
}

/** One running fetch, as the watch sees it. The fetch sets `bytes` as they arrive. */
export class FetchMeter {
  bytes = 0;
  /** When `bytes` was last seen growing (sampled at each check). */
  lastByteAt = -Infinity;
  /** Bytes already accounted in a slice. */
  seen = 0;
  /** This fetch's own part of the session's recent slices. */
  readonly slices: Slice[] = [];
  /**
   * The source relays the piece as it arrives (cut-through): its pace is its upstream's, and a
   * relay cut off for it would be blamed by the supernode once its own fetch ends well. Only the
   * absolute rule applies; the relay's own watch judges the upstream.
   */
  relayed = false;
  private readonly ctl = new AbortController();
  private readonly follow = () => this.ctl.abort(this.parent!.reason);

  constructor(
    readonly src: string,
    /** The CDN: never blacklisted by the supernode, so only a dead one is cut off. */
    readonly cdn: boolean,
    /** Wrapped bytes the fetch must receive. */
    readonly length: number,
    readonly startedAt: number,
    /** The session's signal, which this one follows until dispose(). */
    private readonly parent?: AbortSignal,
  ) {
    if (parent?.aborted) this.follow();
    else parent?.addEventListener('abort', this.follow, { once: true });
  }

  dispose(): void {
    this.parent?.removeEventListener('abort', this.follow);
  }

  /** For the fetch: aborted when the session ends or the watch cuts the fetch off. */
  get signal(): AbortSignal {
    return this.ctl.signal;
  }

  cut(why: string): void {
    this.ctl.abort(new SlowSource(why));
  }
}

const rate = (bytes: number, ms: number) => (bytes * 1000) / Math.max(ms, 1);
const fmt = (bps: number) => (bps >= 1024 * 1024 ? `${(bps / 1024 / 1024).toFixed(1)} MiB/s` : `${(bps / 1024).toFixed(1)} KiB/s`);
const sum = (slices: Slice[]) => slices.reduce((a, s) => ({ bytes: a.bytes + s.bytes, busy: a.busy + s.busy }), { bytes: 0, busy: 0 });

/** The fetches of one P2P download session, judged against each other. */
export class SlowSourceWatch {
  private readonly o: SlowSourceOptions;
  private readonly running = new Set<FetchMeter>();
  /** Every fetch's bytes and fetch-time per check interval, over the last graceMs. */
  private readonly slices: Slice[] = [];
  private pending = { bytes: 0, busy: 0 };
  private lastCheck: number;
  /** When a fetch last ended with its piece. */
  private lastOkAt = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    opts: Partial<SlowSourceOptions> = {},
    private readonly onCut: (m: FetchMeter, why: string) => void = () => undefined,
    private readonly now: () => number = Date.now,
  ) {
    this.o = { ...SLOW_SOURCE_DEFAULTS, ...opts };
    this.lastCheck = this.now();
  }

  start(src: string, cdn: boolean, length: number, signal?: AbortSignal): FetchMeter {
    const m = new FetchMeter(src, cdn, length, this.now(), signal);
    // A fetch that waited on an earlier one of its piece may start after the session ended: it
    // follows the session's (aborted) signal, and must not arm a timer nobody clears.
    if (this.closed) return m;
    this.running.add(m);
    if (!this.timer && this.o.checkMs > 0) {
      this.timer = setInterval(() => this.check(), this.o.checkMs);
      this.timer.unref();
    }
    return m;
  }

  end(m: FetchMeter, ok: boolean): void {
    m.dispose();
    if (!this.running.delete(m)) return;
    // A fast piece often starts and ends between two checks: what it got still counts.
    const now = this.now();
    this.pending.bytes += m.bytes - m.seen;
    this.pending.busy += now - Math.max(m.startedAt, this.lastCheck);
    if (ok && m.bytes > 0) this.lastOkAt = now;
  }

  /** Cut off the fetches that are slow now; returns them. */
  check(): FetchMeter[] {
    const now = this.now();
    const since = now - this.o.graceMs;
    for (const m of this.running) {
      const slice = { at: now, bytes: m.bytes - m.seen, busy: now - Math.max(m.startedAt, this.lastCheck) };
      if (slice.bytes > 0) m.lastByteAt = now;
      m.seen = m.bytes;
      this.pending.bytes += slice.bytes;
      this.pending.busy += slice.busy;
      m.slices.push(slice);
      while (m.slices.length > 0 && m.slices[0].at <= since) m.slices.shift();
    }
    this.slices.push({ at: now, ...this.pending });
    while (this.slices.length > 0 && this.slices[0].at <= since) this.slices.shift();
    this.pending = { bytes: 0, busy: 0 };
    this.lastCheck = now;

    const all = sum(this.slices);
    const cut: FetchMeter[] = [];
    for (const m of this.running) {
      const why = this.judge(m, now, all);
      if (why === undefined) continue;
      cut.push(m);
      this.onCut(m, why);
      m.cut(why);
    }
    for (const m of cut) this.running.delete(m);
    return cut;
  }

  private judge(m: FetchMeter, now: number, all: { bytes: number; busy: number }): string | undefined {
    const age = now - m.startedAt;
    const quietSince = Math.max(m.startedAt, m.lastByteAt);
    if (!m.relayed && now - quietSince >= this.o.silentMs) {
      // Others still receiving rules out our own link (or disk) as the cause.
      let othersAt = this.lastOkAt;
      for (const o of this.running) if (o !== m) othersAt = Math.max(othersAt, o.lastByteAt);
      if (othersAt > quietSince && now - othersAt < this.o.silentMs) {
        return `slow source: nothing for ${((now - quietSince) / 1000).toFixed(1)} s while other fetches received bytes`;
      }
    }
    if (!m.cdn && !m.relayed && age >= this.o.graceMs) {
      const mine = sum(m.slices);
      const others = { bytes: all.bytes - mine.bytes, busy: all.busy - mine.busy };
      if (others.bytes >= MIN_REF_BYTES && others.busy > 0) {
        // The better of its recent and its overall rate: bytes held back by our own rate limit
        // arrive in bursts, and a gap in the window says nothing when the fetch kept up overall.
        const got = Math.max(rate(mine.bytes, mine.busy), rate(m.bytes, age));
        const ref = rate(others.bytes, others.busy);
        if (got < this.o.fraction * ref) {
          return `slow source: ${fmt(got)} for ${(age / 1000).toFixed(1)} s, while this download's other fetches get ${fmt(ref)} each`;
        }
      }
    }
    if (age >= this.o.noRefGraceMs && m.bytes > 0 && (m.length * age) / m.bytes > this.o.pieceDeadlineMs) {
      return `slow source: ${fmt(rate(m.bytes, age))} for ${(age / 1000).toFixed(1)} s, the piece would take over ${(this.o.pieceDeadlineMs / 1000).toFixed(0)} s`;
    }
    return undefined;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.timer = undefined;
    // The session's own abort ends the fetches still running.
    this.running.clear();
  }
}
