// The daemons ask V8 for a scavenge every few MiB of I/O, so dead read buffers do not pile up
// outside the heap (shared/mem/gc-pacer.ts). Observed through the runtime's own GC events.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { GcPacer } from '../shared/mem/gc-pacer.js';

async function minorGcsDuring(fn: () => void): Promise<number> {
  let n = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) n++;
  });
  obs.observe({ entryTypes: ['gc'] });
  fn();
  await sleep(50);
  obs.disconnect();
  return n;
}

describe('GC pacing', () => {
  it('does nothing until enabled, then scavenges once per everyBytes moved', async () => {
    const pacer = new GcPacer(1024 * 1024);
    const before = await minorGcsDuring(() => {
      for (let i = 0; i < 20; i++) pacer.account(1024 * 1024);
    });
    assert.ok(before <= 2, `off by default (tests and embedders): ${before} scavenges of V8's own`);
    pacer.enable();
    const after = await minorGcsDuring(() => {
      for (let i = 0; i < 20; i++) pacer.account(512 * 1024);
    });
    assert.ok(after >= 10 && after <= 14, `10 MiB moved in 1 MiB steps: ${after} scavenges`);
    assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'no global gc appears');
  });
});
