import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { freePort, run, waitFor } from './fixtures/proc.js';
import { metric, supernodeAt } from './helpers/cluster.js';
import { REPO_ROOT, startBin, type Daemon } from './helpers/e2e.js';
import { randomBlob } from './helpers/origin.js';
import { registerPeer, useOrigin } from './helpers/sn-fixture.js';

const MiB = 1024 * 1024;

async function register(api: string, url: string, cid: string) {
  const r = await registerPeer(api, { rawUrl: url, cid, ip: '127.0.0.10', port: 0, path: '/peer/file/x' });
  assert.equal(r.code, 200);
  return r;
}

async function taskInfo(api: string, id: string) {
  const res = await request(`${api}/api/v1/tasks/${id}`);
  return (await res.body.json()) as { cdnStatus: string; piecesReady: number; pieceTotal: number; resumedFrom: number; bytesFromSource: number; sha256: string };
}

/** The CDN's piece path (token included) from a poll by registered peer `cid`. */
async function cdnPath(api: string, id: string, cid: string): Promise<string> {
  const res = await request(`${api}/peer/task?taskId=${id}&srcCid=${cid}`);
  const j = (await res.body.json()) as { code: number; data?: { path: string; cid: string }[] };
  assert.equal(j.code, 601, JSON.stringify(j));
  const piece = j.data!.find((p) => p.cid.startsWith('cdnnode:'));
  assert.ok(piece, 'a piece from the CDN');
  return piece.path;
}

/** Fetch every piece from the download port, unwrap, and hash the whole blob. */
async function blobFromDownloadPort(dl: string, path: string, fileLength: number, pieceSize: number): Promise<string> {
  const h = createHash('sha256');
  const content = pieceSize - 5;
  for (let n = 0; n * content < fileLength; n++) {
    const len = Math.min(content, fileLength - n * content);
    const res = await request(`${dl}${path}`, { headers: { range: `bytes=${n * pieceSize}-${n * pieceSize + len + 4}` } });
    assert.equal(res.statusCode, 206);
    const buf = Buffer.from(await res.body.arrayBuffer());
    h.update(buf.subarray(4, buf.length - 1));
  }
  return h.digest('hex');
}

describe('supernode persistence', () => {
  const ctx = useOrigin('persist');

  it('refuses to start on a homeDir another running supernode holds, and says so', async () => {
    const sn = await supernodeAt(ctx.dir, '127.0.0.2');
    try {
      await assert.rejects(supernodeAt(ctx.dir, '127.0.0.2'), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'HOME_DIR_IN_USE');
        assert.match(err.message, /sn-home-127\.0\.0\.2 is in use by another running supernode/);
        return true;
      });
    } finally {
      await sn.close();
    }
    // Once the first one is gone the homeDir is free again.
    await (await supernodeAt(ctx.dir, '127.0.0.2')).close();
  });

  it('./bin/supernode on a homeDir in use exits 1 with the code, not a stack trace', async () => {
    const cfg = join(ctx.dir, 'in-use.yml');
    writeFileSync(cfg, `base:\n  homeDir: ${join(ctx.dir, 'in-use')}\n  listenIP: 127.0.0.3\n`);
    const port = await freePort('127.0.0.3');
    const sn = await startBin('supernode', ['--config', cfg, '--port', String(port), '--download-port=0'], '127.0.0.3', port);
    try {
      const r = await run(join(REPO_ROOT, 'bin', 'supernode'), ['--config', cfg, '--port', String(await freePort('127.0.0.3')), '--download-port=0'], { timeoutMs: 20_000 });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^supernode: HOME_DIR_IN_USE: homeDir .*in-use is in use by another running supernode/);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    } finally {
      await sn.stop();
    }
  });

  it('./bin/supernode on a busy port, or a homeDir it cannot create, exits 1 with one line; --version answers', async () => {
    const port = await freePort('127.0.0.3');
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(port, '127.0.0.3', () => r()));
    try {
      const busy = await run(join(REPO_ROOT, 'bin', 'supernode'), ['--home-dir', join(ctx.dir, 'busy'), '--listen-ip', '127.0.0.3', '--port', String(port), '--download-port=0'], { timeoutMs: 20_000 });
      assert.equal(busy.code, 1, busy.stderr);
      assert.match(busy.stderr, /^supernode: listen EADDRINUSE: address already in use 127\.0\.0\.3:\d+\n$/);
    } finally {
      blocker.close();
    }
    const bad = await run(join(REPO_ROOT, 'bin', 'supernode'), ['--home-dir', '/dev/null/x', '--listen-ip', '127.0.0.3', '--port=0', '--download-port=0'], { timeoutMs: 20_000 });
    assert.equal(bad.code, 1, bad.stderr);
    assert.match(bad.stderr, /^supernode: ENOTDIR: not a directory, mkdir '\/dev\/null\/x'\n$/);
    const v = await run(join(REPO_ROOT, 'bin', 'supernode'), ['--version'], { timeoutMs: 20_000 });
    assert.equal(v.code, 0);
    assert.match(v.stdout, /^supernode 1\.0\.6-ts /);
  });

  it('serves a cached blob after a restart with 0 bytes from the origin', async () => {
    const { dir, origin } = ctx;
    const d = origin.add(randomBlob(9 * MiB));
    const url = origin.blobUrl(d);
    // Same dir and host: the second supernode gets the first one's homeDir.
    const sn = await supernodeAt(dir, '127.0.0.1');
    const api = `http://127.0.0.1:${sn.apiPort}`;
    const reg = await register(api, url, 'c1');
    await waitFor(async () => (await taskInfo(api, reg.taskId)).cdnStatus === 'SUCCESS', { timeoutMs: 10_000 });
    await sn.close();
    const before = origin.served.get(d);
    const sn2 = await supernodeAt(dir, '127.0.0.1');
    try {
      // Before anyone asks for it, the restored blob counts as cached (the gauges tick each second).
      await waitFor(async () => metric(await sn2.metrics.registry.metrics(), 'supernode_cdn_cached_tasks') === 1 || undefined, { timeoutMs: 5_000, message: 'cached tasks after a restart' });
      assert.equal(metric(await sn2.metrics.registry.metrics(), 'supernode_cdn_cached_bytes'), 9 * MiB);
      const api2 = `http://127.0.0.1:${sn2.apiPort}`;
      const reg2 = await register(api2, url, 'c2');
      assert.equal(reg2.taskId, reg.taskId);
      await waitFor(async () => (await taskInfo(api2, reg.taskId)).cdnStatus === 'SUCCESS', { timeoutMs: 10_000 });
      assert.equal(origin.served.get(d), before, '0 bytes from the origin after the restart');
      assert.equal((await taskInfo(api2, reg.taskId)).bytesFromSource, 0);
      assert.equal(await blobFromDownloadPort(`http://127.0.0.1:${sn2.downloadPort}`, await cdnPath(api2, reg.taskId, 'c2'), reg2.fileLength, reg2.pieceSize), d);
    } finally {
      await sn2.close();
    }
  });

  it('a graceful stop keeps a half-download, and the next run resumes it with a Range request', async () => {
    const { dir, origin } = ctx;
    const size = 24 * MiB;
    const d = origin.add(randomBlob(size));
    const url = origin.blobUrl(d);
    origin.rate = 6 * MiB;
    let sn = await supernodeAt(dir, '127.0.0.4');
    try {
      const api = `http://127.0.0.4:${sn.apiPort}`;
      const reg = await register(api, url, 's1');
      await waitFor(async () => (await taskInfo(api, reg.taskId)).piecesReady >= 2, { timeoutMs: 20_000 });
      await sn.close();
      origin.rate = 0;
      sn = await supernodeAt(dir, '127.0.0.4');
      const api2 = `http://127.0.0.4:${sn.apiPort}`;
      await register(api2, url, 's2');
      await waitFor(async () => (await taskInfo(api2, reg.taskId)).cdnStatus === 'SUCCESS', { timeoutMs: 20_000 });
      const info = await taskInfo(api2, reg.taskId);
      assert.ok(info.resumedFrom > 0, 'resumed, not started over');
      assert.equal(origin.log.filter((l) => l.digest === d).at(-1)!.range, `bytes=${info.resumedFrom}-`);
      assert.equal(info.sha256, d);
    } finally {
      origin.rate = 0;
      await sn.close();
    }
  });

  it('resumes a killed half-download with a Range request instead of starting over', async () => {
    const { dir, origin } = ctx;
    const size = 24 * MiB;
    const d = origin.add(randomBlob(size));
    const url = origin.blobUrl(d);
    const home = join(dir, 'killed');
    const cfg = join(dir, 'killed.yml');
    const port = await freePort('127.0.0.1');
    const dlPort = await freePort('127.0.0.1');
    writeFileSync(cfg, `base:\n  homeDir: ${home}\n  listenPort: ${port}\n  downloadPort: ${dlPort}\n  listenIP: 127.0.0.1\n`);
    const api = `http://127.0.0.1:${port}`;
    origin.rate = 6 * MiB;
    let sn: Daemon | undefined = await startBin('supernode', ['--config', cfg], '127.0.0.1', port);
    try {
      const reg = await register(api, url, 'k1');
      await waitFor(async () => (await taskInfo(api, reg.taskId)).piecesReady >= 2, { timeoutMs: 20_000 });
      sn.proc.child.kill('SIGKILL');
      await sn.proc.exited;
      sn = undefined;
      origin.rate = 0;
      sn = await startBin('supernode', ['--config', cfg], '127.0.0.1', port);
      const reg2 = await register(api, url, 'k2');
      await waitFor(async () => (await taskInfo(api, reg.taskId)).cdnStatus === 'SUCCESS', { timeoutMs: 20_000 });
      const info = await taskInfo(api, reg.taskId);
      const contentSize = reg2.pieceSize - 5;
      assert.ok(info.resumedFrom > 0 && info.resumedFrom % contentSize === 0, `resumed at a piece boundary: ${info.resumedFrom}`);
      const second = origin.log.filter((l) => l.digest === d).at(-1)!;
      assert.equal(second.range, `bytes=${info.resumedFrom}-`, 'the origin saw a Range request');
      assert.equal(second.bytes, size - info.resumedFrom);
      assert.equal(info.sha256, d, 'the whole blob verifies across the two runs');
      assert.equal(await blobFromDownloadPort(`http://127.0.0.1:${dlPort}`, await cdnPath(api, reg.taskId, 'k2'), reg2.fileLength, reg2.pieceSize), d);
    } finally {
      origin.rate = 0;
      await sn?.stop();
    }
  });
});
