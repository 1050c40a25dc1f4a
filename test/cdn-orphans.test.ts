// Task files no metadata describes (a download killed before its length was known, a crash
// before the first metadata write, a Go supernode's old cache) are removed at startup; disk GC
// would never see them. Files of known tasks, and anything not named by the layout, stay.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { dataFile, partFile, taskDir } from '../supernode/cdn/paths.js';
import { waitFor } from './fixtures/proc.js';
import { supernodeAt } from './helpers/cluster.js';
import { randomBlob } from './helpers/origin.js';
import { registerPeer, useOrigin } from './helpers/sn-fixture.js';

const idOf = (s: string) => createHash('sha256').update(s).digest('hex');

describe('CDN startup reconciles the download tree with its metadata', () => {
  const ctx = useOrigin('cdn-orphans');

  it('removes orphan .part and data files, keeps known tasks and foreign files', async () => {
    const { dir, origin } = ctx;
    const home = join(dir, 'sn-home-127.0.0.6');
    const reg = async (api: string, d: string, cid: string) => {
      const r = await registerPeer(api, { rawUrl: origin.blobUrl(d), cid, ip: '127.0.0.16', port: 0 });
      assert.equal(r.code, 200);
      return r.taskId;
    };
    const good = origin.add(randomBlob(700_000));
    const lost = origin.add(randomBlob(200_000));
    const sn = await supernodeAt(dir, '127.0.0.6');
    let goodId = '';
    let lostId = '';
    try {
      const api = `http://127.0.0.6:${sn.apiPort}`;
      goodId = await reg(api, good, 'a');
      lostId = await reg(api, lost, 'b');
      await waitFor(() => sn.cdn.get(goodId)?.status === 'SUCCESS' && sn.cdn.get(lostId)?.status === 'SUCCESS');
    } finally {
      await sn.close();
    }
    // A SIGKILLed download with no Content-Length, a Go supernode's cache entry, foreign files.
    const killed = idOf('killed');
    const goCache = idOf('go-cache');
    const foreign = [join(taskDir(home, killed), 'notes.txt'), join(home, 'repo', 'download', 'xyz', idOf('x')), join(taskDir(home, goodId), idOf('wrong-prefix'))];
    const orphans = [partFile(home, killed), dataFile(home, goCache), `${dataFile(home, goCache)}.meta`, `${dataFile(home, goCache)}.md5`];
    for (const f of [...orphans, ...foreign]) {
      mkdirSync(join(f, '..'), { recursive: true });
      writeFileSync(f, 'x'.repeat(1000));
    }
    // And the reverse: metadata whose file someone removed.
    rmSync(dataFile(home, lostId));

    const sn2 = await supernodeAt(dir, '127.0.0.6');
    try {
      for (const f of orphans) assert.equal(existsSync(f), false, `${f} removed`);
      for (const f of foreign) assert.ok(existsSync(f), `${f} is not the CDN's to remove`);
      assert.ok(existsSync(dataFile(home, goodId)), 'the known task keeps its file');
      assert.deepEqual(sn2.cdn.diskEntries().map((e) => e.taskId), [goodId], 'a task whose file is gone is forgotten');
      const sent = origin.served.get(good);
      const api = `http://127.0.0.6:${sn2.apiPort}`;
      assert.equal(await reg(api, good, 'c'), goodId);
      await waitFor(() => sn2.cdn.get(goodId)?.status === 'SUCCESS');
      assert.equal(origin.served.get(good), sent, 'the kept file is served, not fetched again');
    } finally {
      await sn2.close();
    }
  });
});
