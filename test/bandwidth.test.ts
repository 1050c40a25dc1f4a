import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { waitFor } from './fixtures/proc.js';
import { randomBlob } from './helpers/origin.js';
import { registerPeer, useOrigin } from './helpers/sn-fixture.js';

const MiB = 1024 * 1024;
// maxBandwidth 5M - systemReservedBandwidth 1M: a 4 MiB/s budget, base 1024.
const LIMIT = 4 * MiB;

describe('supernode bandwidth budget (maxBandwidth - systemReservedBandwidth)', () => {
  const ctx = useOrigin('bw', '  maxBandwidth: 5M\n  systemReservedBandwidth: 1M\n');
  let taskId: string;

  it('source fetches stay within ±10% of the limit over 10 s', async (t) => {
    const { origin, sn } = ctx;
    const d = origin.add(randomBlob(52 * MiB));
    // Chunked with backpressure but far faster than the budget, so `served` follows the reader.
    origin.rate = 1024 * MiB;
    taskId = (await registerPeer(ctx.api, { rawUrl: origin.blobUrl(d), cid: 'bw', ip: '127.0.0.13', port: 0 })).taskId;
    const served = () => origin.served.get(d) ?? 0;
    await sleep(1000);
    const b0 = served();
    const t0 = performance.now();
    await sleep(10_000);
    const rate = (served() - b0) / ((performance.now() - t0) / 1000);
    t.diagnostic(`source rate ${(rate / MiB).toFixed(3)} MiB/s (limit 4)`);
    assert.ok(Math.abs(rate - LIMIT) / LIMIT <= 0.1, `source rate ${(rate / MiB).toFixed(2)} MiB/s vs 4 MiB/s`);
    await waitFor(() => sn.cdn.get(taskId)?.status === 'SUCCESS', { timeoutMs: 10_000 });
    origin.rate = 0;
  });

  it('piece serving on the download port stays within ±10% of the limit over 10 s', async (tc) => {
    const { sn } = ctx;
    const t = sn.cdn.get(taskId)!;
    const layout = t.layout!;
    let bytes = 0;
    let stop = false;
    const client = async (k: number) => {
      for (let n = k; !stop; n = (n + 4) % layout.count) {
        const p = layout.piece(n);
        const res = await request(`http://127.0.0.1:${sn.downloadPort}${sn.downloadPath(taskId)}`, { headers: { range: `bytes=${p.start}-${p.end}` } });
        for await (const c of res.body) bytes += (c as Buffer).length;
      }
    };
    const clients = [0, 1, 2, 3].map(client);
    await sleep(1000);
    const b0 = bytes;
    const t0 = performance.now();
    await sleep(10_000);
    const rate = (bytes - b0) / ((performance.now() - t0) / 1000);
    tc.diagnostic(`serving rate ${(rate / MiB).toFixed(3)} MiB/s (limit 4)`);
    stop = true;
    await Promise.all(clients);
    assert.ok(Math.abs(rate - LIMIT) / LIMIT <= 0.1, `serving rate ${(rate / MiB).toFixed(2)} MiB/s vs 4 MiB/s`);
  });
});
