// A blob pulled every hour is "regular" for young disk GC (spec §6): its access interval must
// survive the meta GC dropping the idle task from memory between pulls, and a restart.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { waitFor } from './fixtures/proc.js';
import { supernodeAt } from './helpers/cluster.js';
import { randomBlob } from './helpers/origin.js';
import { registerPeer, useOrigin } from './helpers/sn-fixture.js';

const H = 3_600_000;
const G = 1024 ** 3;

describe('CDN access interval across reloads', () => {
  const ctx = useOrigin('cdn-interval');

  it('an hourly pull keeps interval ~1 h through meta GC and a restart', async () => {
    const { dir, origin } = ctx;
    let clock = 50_000_000;
    const deps = { now: () => clock, freeBytes: async () => 500 * G };
    const d = origin.add(randomBlob(300_000));
    const body = (cid: string) => ({ rawUrl: origin.blobUrl(d), cid, ip: '127.0.0.15', port: 0 });
    let sn = await supernodeAt(dir, '127.0.0.5', '', [], deps);
    try {
      const api = () => `http://127.0.0.5:${sn.apiPort}`;
      const id = (await registerPeer(api(), body('p0'))).taskId;
      await waitFor(() => sn.cdn.get(id)?.status === 'SUCCESS');
      for (let i = 1; i <= 3; i++) {
        clock += H;
        assert.ok(sn.gc.runMeta().expire.includes(id), `pull ${i}: the idle task is dropped from memory first`);
        assert.equal(sn.cdn.get(id), undefined);
        if (i === 3) {
          // The last gap spans a restart as well.
          await sn.close();
          sn = await supernodeAt(dir, '127.0.0.5', '', [], deps);
        }
        assert.equal((await registerPeer(api(), body(`p${i}`))).code, 200);
        await waitFor(() => sn.cdn.get(id)?.status === 'SUCCESS');
      }
      const t = sn.cdn.get(id)!;
      assert.equal(t.accessCount, 4);
      assert.ok(Math.abs(t.interval - H) < 1000, `interval ${t.interval} ms, expected ~${H}`);
      const entry = sn.cdn.diskEntries().find((e) => e.taskId === id)!;
      assert.ok(Math.abs(entry.interval - H) < 1000, 'disk GC sees the same interval');
    } finally {
      await sn.close();
    }
  });
});
