// An origin that sends no Content-Length and then stops sending must fail the download after the
// body idle time, as a sized body does, instead of holding dfget (or anything using the
// Downloader) for good.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Downloader } from '../dfdaemon/peer/downloader.js';
import { SupernodeClient } from '../dfdaemon/peer/supernode-client.js';
import { PieceStore } from '../dfdaemon/store/piece-store.js';
import { createLogger } from '../shared/log/index.js';

const log = createLogger('test', { level: 'silent' });

describe('back-source of a body without a length that stalls', () => {
  let dir: string;
  let url: string;
  const held: ServerResponse[] = [];
  const origin = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.write(Buffer.alloc(10_000, 1));
    held.push(res);
  });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-src-idle-'));
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
    url = `http://127.0.0.1:${(origin.address() as AddressInfo).port}/file`;
  });
  after(async () => {
    for (const r of held) r.destroy();
    origin.closeAllConnections();
    await new Promise((r) => origin.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it('fails with SOURCE_TIMEOUT after the idle time and leaves no file', { timeout: 20_000 }, async () => {
    const store = new PieceStore(join(dir, 'store'));
    const client = new SupernodeClient([], log);
    const dl = new Downloader({ store, client, cid: 'c', uploadPort: 0, localIP: '127.0.0.1', filter: [], log, sourceIdleMs: 500 });
    const t0 = Date.now();
    try {
      await assert.rejects(dl.start({ url, headers: {} }), /sent nothing for 500 ms/);
      assert.ok(Date.now() - t0 < 5_000, 'within the idle time, not hanging');
      assert.equal([...store.all()].length, 0, 'no task');
      const left = (await readdir(join(dir, 'store'), { recursive: true }).catch(() => [])).filter((f) => !String(f).endsWith('/'));
      assert.deepEqual(left.filter((f) => /part/.test(String(f))), [], 'no partial file');
    } finally {
      await dl.close();
      await client.close();
      await store.close();
    }
  });
});
