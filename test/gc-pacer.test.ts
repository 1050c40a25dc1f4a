// The daemons ask V8 for a scavenge every few MiB of I/O, so dead read buffers do not pile up
// outside the heap (shared/mem/gc-pacer.ts). Observed through the runtime's own GC events.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { GcPacer } from '../shared/mem/gc-pacer.js';

async function gcsDuring(fn: () => void, kind: number = constants.NODE_PERFORMANCE_GC_MINOR): Promise<number> {
  let n = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === kind) n++;
  });
  obs.observe({ entryTypes: ['gc'] });
  fn();
  await sleep(50);
  obs.disconnect();
  return n;
}

describe('GC pacing', () => {
  it('does nothing until enabled, then scavenges once per everyBytes moved', async () => {
    // A zero external-memory threshold: every step counts (the daemons use 8 MiB).
    const pacer = new GcPacer(1024 * 1024, 0, 1000);
    const before = await gcsDuring(() => {
      for (let i = 0; i < 20; i++) pacer.account(1024 * 1024);
    });
    assert.ok(before <= 2, `off by default (tests and embedders): ${before} scavenges of V8's own`);
    pacer.enable();
    const after = await gcsDuring(() => {
      for (let i = 0; i < 20; i++) pacer.account(512 * 1024);
    });
    assert.ok(after >= 10 && after <= 14, `10 MiB moved in 1 MiB steps: ${after} scavenges`);
    assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'no global gc appears');
  });

  it('leaves V8 alone while external memory is under the limit, and makes every Nth forced GC a full one', async () => {
    const calm = new GcPacer(1024 * 1024, 1024 * 1024 * 1024, 16);
    calm.enable();
    const none = await gcsDuring(() => {
      for (let i = 0; i < 20; i++) calm.account(1024 * 1024);
    });
    assert.ok(none <= 2, `under the limit: ${none} scavenges, V8's own only`);
    const mixed = new GcPacer(1024 * 1024, 0, 2);
    mixed.enable();
    const majors = await gcsDuring(() => {
      for (let i = 0; i < 10; i++) mixed.account(1024 * 1024);
    }, constants.NODE_PERFORMANCE_GC_MAJOR);
    assert.ok(majors >= 5, `every 2nd of 10 forced GCs is full: ${majors}`);
  });
});
