import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cpuDuring, cpuSecondsOf } from '../bench/stream/measure.js';
import { cpuBoundRatio, type StreamResult } from '../bench/stream/report.js';

describe('stream benchmark CPU accounting', () => {
  it('counts the CPU a process burns, from /proc', async () => {
    const spin = (ms: number) => {
      const end = performance.now() + ms;
      while (performance.now() < end);
    };
    const before = cpuSecondsOf(process.pid);
    spin(300);
    const used = cpuSecondsOf(process.pid) - before;
    assert.ok(used >= 0.2 && used < 2, `300 ms of spinning counted as ${used} CPU-s`);
    const { value, cpu } = await cpuDuring({ self: process.pid }, async () => (spin(200), 7));
    assert.equal(value, 7);
    assert.ok(cpu.self >= 0.12, `/proc saw ${cpu.self} CPU-s`);
    assert.ok(cpu.client >= 0.12, `cpuUsage saw ${cpu.client} CPU-s`);
  });

  it('bounds the P2P ratio by the daemons\' CPU over the cores, ignoring the client', () => {
    // 1 GB direct at 1000 MB/s takes 1 s; 4 CPU-s of daemon work on 2 cores takes at least 2 s.
    const r = {
      blobBytes: 1e9,
      cpus: 2,
      direct: { MBps: 1000, ttfbMs: 1 },
      cpuSec: { direct: {}, cdnWarm: { client: 9, supernode: 1, dfdaemon: 3 }, local: {} },
    } as unknown as StreamResult;
    assert.equal(cpuBoundRatio(r), 0.5);
  });
});
