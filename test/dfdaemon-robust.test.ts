// dfdaemon under faults that used to take the process or its upload slots down: a download that
// fails while a second client waits on it, and a peer that stops reading an upload.
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { createUploader, handleUpload } from '../dfdaemon/uploader/uploader.js';
import { defaultPiecePaths } from '../dfdaemon/uploader/piece-path.js';
import { PieceStore } from '../dfdaemon/store/piece-store.js';
import { createLogger } from '../shared/log/index.js';
import { TokenBucket } from '../shared/ratelimit/token-bucket.js';
import { Layout, MiB, WRAP_OVERHEAD } from '../shared/protocol/pieces.js';
import { dfdaemonAt, metric, supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin } from './helpers/origin.js';

const quiet = createLogger('test', { level: 'silent' });

function listen(server: Server, host = '127.0.0.1'): Promise<number> {
  return new Promise((r) => server.listen(0, host, () => r((server.address() as AddressInfo).port)));
}

/** GET through the proxy (absolute-form); resolves with the bytes received and how it ended. */
function proxiedGet(proxyPort: number, url: string): Promise<{ status: number; bytes: number; complete: boolean }> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: proxyPort, path: url, headers: { host: new URL(url).host } }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, complete: res.complete }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, bytes, complete: false }));
    });
    req.on('error', () => resolve({ status: 0, bytes: 0, complete: false }));
    req.end();
  });
}

describe('dfdaemon under faults', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-robust-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('a download that fails while a second client joins it fails both clients and leaves the daemon up', async () => {
    const size = 2 * MiB;
    // An origin that sends half the blob, then resets: the back-source download fails.
    const origin = createServer((req, res) => {
      res.writeHead(200, { 'content-length': size, 'content-type': 'application/octet-stream' });
      if (req.method === 'HEAD') return void res.end();
      res.write(Buffer.alloc(size / 2, 1), () => setTimeout(() => res.socket?.destroy(), 400));
    });
    const port = await listen(origin);
    // No supernode answers, so the blob comes from the origin.
    const df = await dfdaemonAt(dir, '127.0.0.1', ['127.0.0.1:1']);
    try {
      const url = `http://127.0.0.1:${port}/v2/x/blobs/sha256:${'b'.repeat(64)}`;
      const first = proxiedGet(df.port, url);
      await sleep(150);
      const second = proxiedGet(df.port, url);
      const got = await Promise.all([first, second]);
      for (const g of got) assert.equal(g.complete, false, 'neither client is handed a truncated blob as complete');
      await sleep(200);
      assert.equal((await request(`http://127.0.0.1:${df.port}/_ping`)).statusCode, 200);
    } finally {
      await df.close();
      origin.closeAllConnections();
      await new Promise((r) => origin.close(r));
    }
  });

  it('a blob GET with Range (Docker resuming a layer) gets the registry\'s 206 slice, not a whole-blob task', async () => {
    const origin = await startOrigin('127.0.0.1');
    const sn = await supernodeAt(dir, '127.0.0.9');
    const df = await dfdaemonAt(dir, '127.0.0.1', [`127.0.0.9:${sn.apiPort}`]);
    try {
      const blob = randomBlob(300_000);
      const d = origin.add(blob);
      const res = await new Promise<{ status: number; range: string; body: Buffer }>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port: df.port, path: origin.blobUrl(d), headers: { range: 'bytes=1000-' } }, (r) => {
          const parts: Buffer[] = [];
          r.on('data', (c: Buffer) => parts.push(c));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, range: String(r.headers['content-range']), body: Buffer.concat(parts) }));
        });
        req.on('error', reject);
        req.end();
      });
      assert.equal(res.status, 206);
      assert.equal(res.range, `bytes 1000-${blob.length - 1}/${blob.length}`);
      assert.ok(res.body.equals(blob.subarray(1000)));
      assert.equal(df.store.size, 0, 'no task file for a slice');
      assert.equal(metric(await df.metrics.registry.metrics(), 'dfdaemon_requests_total', { route: 'direct' }), 1);
      assert.equal(sn.svc.tasks.size, 0, 'no ranged task at the supernode');
    } finally {
      await df.close();
      await sn.close();
      await origin.close();
    }
  });

  it('an upload slowed by the host\'s upload budget is not taken for a stalled peer', async () => {
    const store = new PieceStore(join(dir, 'slow'), () => Date.now());
    const pieceSize = MiB;
    const tf = await store.open('t2', new Layout(pieceSize - WRAP_OVERHEAD, pieceSize));
    await tf.writeAt(Buffer.alloc(pieceSize - WRAP_OVERHEAD, 5), 0);
    tf.markDone(0);
    // 512 KiB/s: each 256 KiB chunk waits ~0.5 s for the bucket, longer than idleMs.
    const up = createUploader({ store, log: quiet, bucket: new TokenBucket(512 * 1024), idleMs: 300 });
    const server = createServer((req, res) => void handleUpload(req, res, up));
    const port = await listen(server);
    try {
      const res = await request(`http://127.0.0.1:${port}${defaultPiecePaths().path('t2')}`, { headers: { range: `bytes=0-${pieceSize - 1}`, piecenum: '0', piecesize: String(pieceSize) } });
      const body = Buffer.from(await res.body.arrayBuffer());
      assert.equal(res.statusCode, 206);
      assert.equal(body.length, pieceSize, 'the whole piece, however slowly');
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await store.close();
    }
  });

  it('an upload whose peer stops reading is cut after idleMs, freeing its slot', async () => {
    const store = new PieceStore(join(dir, 'up'), () => Date.now());
    const pieceSize = 8 * MiB;
    const tf = await store.open('t1', new Layout(pieceSize - WRAP_OVERHEAD, pieceSize));
    await tf.writeAt(Buffer.alloc(pieceSize - WRAP_OVERHEAD, 3), 0);
    tf.markDone(0);
    const up = createUploader({ store, log: quiet, maxConcurrent: 1, idleMs: 300 });
    const server = createServer((req, res) => void handleUpload(req, res, up));
    const port = await listen(server);
    const head = `GET ${defaultPiecePaths().path('t1')} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-${pieceSize - 1}\r\npieceNum: 0\r\npieceSize: ${pieceSize}\r\n\r\n`;
    // A peer that asks for the piece, then never reads.
    const stuck = connect(port, '127.0.0.1', () => stuck.write(head));
    stuck.pause();
    stuck.on('error', () => undefined);
    try {
      await sleep(100);
      assert.equal(up.active, 1);
      const busy = await request(`http://127.0.0.1:${port}${defaultPiecePaths().path('t1')}`, { headers: { range: 'bytes=0-99', piecenum: '0', piecesize: String(pieceSize) } });
      await busy.body.dump();
      assert.equal(busy.statusCode, 503, 'the one slot is taken');
      await sleep(1000);
      assert.equal(up.active, 0, 'the stuck upload was cut');
      assert.equal(tf.busy, 0);
      const res = await request(`http://127.0.0.1:${port}${defaultPiecePaths().path('t1')}`, { headers: { range: `bytes=0-${pieceSize - 1}`, piecenum: '0', piecesize: String(pieceSize) } });
      const body = Buffer.from(await res.body.arrayBuffer());
      assert.equal(res.statusCode, 206);
      assert.equal(body.length, pieceSize);
    } finally {
      stuck.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await store.close();
    }
  });
});
