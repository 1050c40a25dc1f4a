import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import type { Supernode } from '../supernode/server.js';
import { waitFor } from './fixtures/proc.js';
import { supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';

const MiB = 1024 * 1024;
// maxBandwidth 5M - systemReservedBandwidth 1M: a 4 MiB/s budget, base 1024.
const LIMIT = 4 * MiB;

describe('supernode bandwidth budget (maxBandwidth - systemReservedBandwidth)', () => {
  let dir: string;
  let origin: Origin;
  let sn: Supernode;
  let taskId: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-bw-'));
    origin = await startOrigin();
    sn = await supernodeAt(dir, '127.0.0.1', '  maxBandwidth: 5M\n  systemReservedBandwidth: 1M\n');
  });
  after(async () => {
    await sn.close();
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('source fetches stay within ±10% of the limit over 10 s', async (t) => {
    const d = origin.add(randomBlob(52 * MiB));
    // Chunked with backpressure but far faster than the budget, so `served` follows the reader.
    origin.rate = 1024 * MiB;
    const res = await request(`http://127.0.0.1:${sn.apiPort}/peer/registry`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ rawUrl: origin.blobUrl(d), cid: 'bw', ip: '127.0.0.13', port: 0 }),
    });
    taskId = ((await res.body.json()) as { data: { taskId: string } }).data.taskId;
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
    const t = sn.cdn.get(taskId)!;
    const layout = t.layout!;
    let bytes = 0;
    let stop = false;
    const client = async (k: number) => {
      for (let n = k; !stop; n = (n + 4) % layout.count) {
        const p = layout.piece(n);
        const res = await request(`http://127.0.0.1:${sn.downloadPort}/download/${taskId.slice(0, 3)}/${taskId}`, { headers: { range: `bytes=${p.start}-${p.end}` } });
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
