import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { cpuDuring, cpuSecondsOf } from '../bench/stream/measure.js';
import { cpuBoundRatio, type StreamResult } from '../bench/stream/report.js';
import { verifyOciLayout } from './fixtures/skopeo.js';

describe('stream benchmark CPU accounting', () => {
  it('counts the CPU a process burns, from /proc', async () => {
    // Spin until this process has used `ms` of CPU, not of wall time: on a busy machine a
    // wall-clock spin may be descheduled for much of its time (a CI run counted 0.18 of 0.3 s).
    const spin = (ms: number) => {
      const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
      const end = cpu() + ms;
      while (cpu() < end);
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

describe('swarm benchmark: oci: layout verification', () => {
  it('passes a layout whose blobs all match, and fails one with a changed layer', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dfts-oci-'));
    try {
      const blobDir = join(dir, 'blobs', 'sha256');
      await mkdir(blobDir, { recursive: true });
      const put = async (data: Buffer) => {
        const hex = createHash('sha256').update(data).digest('hex');
        await writeFile(join(blobDir, hex), data);
        return { digest: `sha256:${hex}`, size: data.length };
      };
      const layer = Buffer.from('layer bytes');
      const l = await put(layer);
      const c = await put(Buffer.from('{}'));
      const m = await put(Buffer.from(JSON.stringify({ mediaType: 'application/vnd.oci.image.manifest.v1+json', config: c, layers: [l] })));
      await writeFile(join(dir, 'index.json'), JSON.stringify({ manifests: [{ ...m, mediaType: 'application/vnd.oci.image.manifest.v1+json' }] }));
      const good = await verifyOciLayout(dir);
      assert.equal(good.ok, true);
      assert.equal(good.blobs.length, 3);
      await writeFile(join(blobDir, l.digest.slice(7)), Buffer.from('layer bytez'));
      const bad = await verifyOciLayout(dir);
      assert.equal(bad.ok, false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
