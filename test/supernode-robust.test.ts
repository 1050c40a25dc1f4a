// The supernode's CDN under faults: an origin that fails once, a disk it cannot write, and a
// task deleted while a peer registers it again.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dataFile } from '../supernode/cdn/paths.js';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { waitFor } from './fixtures/proc.js';
import type { Supernode } from '../supernode/server.js';
import { supernodeAt } from './helpers/cluster.js';
import { randomBlob } from './helpers/origin.js';
import { registerPeer, useOrigin } from './helpers/sn-fixture.js';

const MiB = 1024 * 1024;

async function cdnStatus(api: string, id: string): Promise<string> {
  const res = await request(`${api}/api/v1/tasks/${id}`);
  return ((await res.body.json()) as { cdnStatus: string }).cdnStatus;
}

describe('supernode CDN under faults', () => {
  const ctx = useOrigin('sn-robust');
  /** A supernode on `ip` for one test; `piece` GETs a wrapped range from its download port. */
  const withSupernode = async (ip: string, fn: (sn: Supernode, api: string, piece: (id: string, range: string) => ReturnType<typeof request>) => Promise<void>) => {
    const sn = await supernodeAt(ctx.dir, ip);
    const piece = (id: string, range: string) => request(`http://${ip}:${sn.downloadPort}${sn.downloadPath(id)}`, { headers: { range } });
    try {
      await fn(sn, `http://${ip}:${sn.apiPort}`, piece);
    } finally {
      await sn.close();
    }
  };

  it('remembers a 404 for failAccessInterval, but not a 503: the next peer gets the blob', async () => {
    const blob = randomBlob(300_000);
    let gets = 0;
    const origin = createServer((req, res) => {
      if (req.url?.includes('missing')) return void res.writeHead(404).end();
      gets++;
      if (gets === 1) return void res.writeHead(503).end('busy');
      res.writeHead(200, { 'content-length': blob.length }).end(blob);
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
    const base = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
    try {
      await withSupernode('127.0.0.4', async (_sn, api) => {
        const reg = (cid: string, path: string) => registerPeer(api, { rawUrl: `${base}${path}`, cid, ip: '127.0.0.14', port: 0 });
        // One 503 is retried a second later (cdn/retry.ts): this registration waits it out.
        assert.equal((await reg('a', '/blob')).code, 200, 'a single 503 is retried');
        const ok = await reg('b', '/blob');
        assert.equal(ok.code, 200, 'a 503 is not held against the URL');
        await waitFor(async () => (await cdnStatus(api, ok.taskId)) === 'SUCCESS');
        assert.equal(gets, 2);
        const miss1 = await reg('c', '/missing');
        const miss2 = await reg('d', '/missing');
        assert.notEqual(miss1.code, 200);
        assert.equal(miss2.code, miss1.code, 'the remembered 404 answers the same');
      });
    } finally {
      origin.closeAllConnections();
      await new Promise((r) => origin.close(r));
    }
  });

  it('an origin that sends no length: peers are told to wait, not a 500, and get every piece once it is in', async () => {
    // Unknown length means Dragonfly's default 4 MiB pieces: three here, the first one whole
    // before the origin pauses.
    const size = 9 * MiB + 123;
    const blob = randomBlob(size);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const origin = createServer((req, res) => {
      // No content-length: Node sends it chunked.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write(blob.subarray(0, 5 * MiB));
      void gate.then(() => res.end(blob.subarray(5 * MiB)));
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(origin.address() as AddressInfo).port}/file`;
    let id = '';
    try {
      await withSupernode('127.0.0.7', async (sn, api) => {
        const ask = async () => (await (await request(`${api}/peer/task?taskId=${id}&srcCid=p1`)).body.json()) as { code: number; data?: { pieceNum: number }[] };
        const reg = await registerPeer(api, { rawUrl: url, cid: 'p1', ip: '127.0.0.17', port: 0 });
        assert.equal(reg.code, 200);
        id = reg.taskId;
        await waitFor(() => (sn.cdn.get(id)?.pieces.length ?? 0) > 0);
        assert.equal((await ask()).code, 602, 'pieces exist but their ranges are not known yet');
        release();
        await waitFor(async () => (await cdnStatus(api, id)) === 'SUCCESS');
        const got = await ask();
        assert.equal(got.code, 601);
        assert.deepEqual(got.data!.map((p) => p.pieceNum).sort(), [0, 1, 2], 'nothing was handed out and lost while waiting');
      });
    } finally {
      release();
      origin.closeAllConnections();
      await new Promise((r) => origin.close(r));
    }
  });

  it('a ranged registration caches the slice it names; a header Node would refuse is a 400, not a poisoned URL', async () => {
    const { origin } = ctx;
    await withSupernode('127.0.0.9', async (sn, api) => {
      const blob = randomBlob(700_000);
      const d = origin.add(blob);
      const reg = await registerPeer(api, { rawUrl: origin.blobUrl(d), cid: 'k', ip: '127.0.0.19', port: 0, headers: ['Range:bytes=1000-'] });
      assert.equal(reg.code, 200);
      assert.equal(reg.fileLength, blob.length - 1000);
      await waitFor(async () => (await cdnStatus(api, reg.taskId)) === 'SUCCESS');
      assert.equal(sn.cdn.get(reg.taskId)!.sha256, createHash('sha256').update(blob.subarray(1000)).digest('hex'));
      assert.equal(origin.log.filter((l) => l.digest === d).at(-1)!.range, 'bytes=1000-');
      for (const bad of [['X-Foo:a\u0001b'], ['Range:bytes=5-3'], ['Range:bytes=0-1,5-6']]) {
        const res = await request(`${api}/peer/registry`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rawUrl: origin.blobUrl(d), cid: 'l', ip: '127.0.0.19', port: 0, headers: bad }) });
        await res.body.dump();
        assert.equal(res.statusCode, 400, JSON.stringify(bad));
      }
      const whole = await registerPeer(api, { rawUrl: origin.blobUrl(d), cid: 'm', ip: '127.0.0.19', port: 0 });
      assert.equal(whole.code, 200, 'the URL is not held against anyone');
      assert.equal(whole.fileLength, blob.length);
    });
  });

  it('a download file it cannot create fails the registration with a code and the supernode keeps serving', async () => {
    const { dir, origin } = ctx;
    const download = join(dir, 'sn-home-127.0.0.5', 'repo', 'download');
    await withSupernode('127.0.0.5', async (_sn, api) => {
      rmSync(download, { recursive: true, force: true });
      mkdirSync(join(download, '..'), { recursive: true });
      writeFileSync(download, 'not a directory');
      const d = origin.add(randomBlob(100_000));
      const r = await registerPeer(api, { rawUrl: origin.blobUrl(d), cid: 'e', ip: '127.0.0.15', port: 0 });
      assert.notEqual(r.code, 200);
      assert.equal((await request(`${api}/_ping`)).statusCode, 200, 'still up');
      rmSync(download, { force: true });
      const again = await registerPeer(api, { rawUrl: origin.blobUrl(d), cid: 'f', ip: '127.0.0.15', port: 0 });
      assert.equal(again.code, 200, 'a disk error is not remembered against the URL');
      await waitFor(async () => (await cdnStatus(api, again.taskId)) === 'SUCCESS');
    });
  });

  it('a finished task whose file vanished from disk is dropped at the first miss and fetched again', async () => {
    const { dir, origin } = ctx;
    await withSupernode('127.0.0.8', async (sn, api, piece) => {
      const d = origin.add(randomBlob(600_000));
      const body = (cid: string) => ({ rawUrl: origin.blobUrl(d), cid, ip: '127.0.0.18', port: 0 });
      const reg = await registerPeer(api, body('i'));
      await waitFor(async () => (await cdnStatus(api, reg.taskId)) === 'SUCCESS');
      rmSync(dataFile(join(dir, 'sn-home-127.0.0.8'), reg.taskId));
      const miss = await piece(reg.taskId, 'bytes=0-99');
      await miss.body.dump();
      assert.equal(miss.statusCode, 404);
      const again = await registerPeer(api, body('j'));
      assert.equal(again.code, 200);
      await waitFor(async () => (await cdnStatus(api, again.taskId)) === 'SUCCESS');
      assert.equal(origin.requests.get(d), 2, 'fetched from the origin again');
      const ok = await piece(reg.taskId, 'bytes=0-99');
      await ok.body.dump();
      assert.equal(ok.statusCode, 206);
    });
  });

  it('a task deleted while a peer registers it again is fetched again, whole and verified', async () => {
    const { origin } = ctx;
    await withSupernode('127.0.0.6', async (sn, api, piece) => {
      const d = origin.add(randomBlob(8 * MiB));
      const body = (cid: string) => ({ rawUrl: origin.blobUrl(d), cid, ip: '127.0.0.16', port: 0 });
      for (const pause of [0, 50]) {
        const first = await registerPeer(api, body(`g${pause}`));
        const del = request(`${api}/api/v1/tasks/${first.taskId}?full=true`, { method: 'DELETE' });
        if (pause) await new Promise((r) => setTimeout(r, pause));
        const [, again] = await Promise.all([del, registerPeer(api, body(`h${pause}`))]);
        assert.equal(again.code, 200);
        await waitFor(async () => ['SUCCESS', 'FAILED', 'SOURCE_ERROR'].includes(await cdnStatus(api, again.taskId)), { timeoutMs: 20_000 });
        assert.equal(await cdnStatus(api, again.taskId), 'SUCCESS', `pause ${pause} ms`);
        const t = sn.cdn.get(again.taskId)!;
        assert.equal(t.sha256, d);
        // The file on disk is the new one, whole.
        const h = createHash('sha256');
        for (let n = 0; n < t.pieces.length; n++) {
          const p = t.layout!.piece(n);
          const res = await piece(t.taskId, `bytes=${p.start}-${p.end}`);
          const buf = Buffer.from(await res.body.arrayBuffer());
          h.update(buf.subarray(4, buf.length - 1));
        }
        assert.equal(h.digest('hex'), d);
      }
    });
  });
});
