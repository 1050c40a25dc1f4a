// A task ID is the sha256 of the blob's URL, so an uploader that served /peer/file/<taskId> would
// hand a private layer to anyone who knows its URL and can reach the port. Our uploader serves
// only the path it registered, whose token an outsider cannot compute.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import type { Dfdaemon } from '../dfdaemon/daemon.js';
import { PiecePaths } from '../dfdaemon/uploader/piece-path.js';
import { WRAP_TAIL } from '../shared/protocol/pieces.js';
import { taskId as computeTaskId } from '../shared/protocol/taskid.js';
import type { Supernode } from '../supernode/server.js';
import { dfdaemonAt, metric, supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { getViaProxy } from './helpers/proxy-get.js';

/** Forwards to the supernode's API port, keeping the body of every registration. */
async function recordingFront(target: number): Promise<{ server: Server; port: number; registered: Record<string, unknown>[] }> {
  const registered: Record<string, unknown>[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if ((req.url ?? '').startsWith('/peer/registry')) registered.push(JSON.parse(body.toString()) as Record<string, unknown>);
      const up = httpRequest({ host: '127.0.0.91', port: target, method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.91', () => r()));
  return { server, port: (server.address() as AddressInfo).port, registered };
}

describe('dfdaemon uploader: piece paths', () => {
  let dir: string;
  let origin: Origin;
  let sn: Supernode;
  let front: Awaited<ReturnType<typeof recordingFront>>;
  let a: Dfdaemon;
  let b: Dfdaemon;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-piece-path-'));
    origin = await startOrigin('127.0.0.90');
    sn = await supernodeAt(dir, '127.0.0.91');
    front = await recordingFront(sn.apiPort);
    a = await dfdaemonAt(dir, '127.0.0.92', [`127.0.0.91:${front.port}`]);
    b = await dfdaemonAt(dir, '127.0.0.93', [`127.0.0.91:${front.port}`]);
  });
  after(async () => {
    await a.close();
    await b.close();
    front.server.closeAllConnections();
    await new Promise((r) => front.server.close(r));
    await sn.close();
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves a task only under the path it registered, and answers any other name as an unknown task', async () => {
    const blob = randomBlob(300 * 1024);
    const digest = origin.add(blob);
    const url = origin.blobUrl(digest);
    const pulled = await getViaProxy('127.0.0.92', a.port, url);
    assert.equal(pulled.sha256, digest);
    const [tf] = [...a.store.all()];
    assert.equal(tf.taskId, computeTaskId(url), 'the task ID is anyone\'s to compute from the URL');
    const piece = tf.layout.piece(0);
    const get = async (p: string) => {
      const res = await request(`http://127.0.0.92:${a.peerPort}${p}`, {
        headers: { range: `bytes=${piece.start}-${piece.end}`, pieceNum: '0', pieceSize: String(tf.layout.pieceSize) },
      });
      return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()), type: res.headers['content-type'] };
    };

    assert.equal((await get(`/peer/file/${tf.taskId}`)).status, 404, 'the bare task ID opens nothing');

    const reg = front.registered.find((r) => r.cid === a.cid);
    assert.ok(reg, 'the dfdaemon registered with the supernode');
    const path = String(reg.path);
    assert.equal(path, a.piecePath(tf.taskId));
    assert.match(path, new RegExp(`^/peer/file/${tf.taskId}-[0-9a-f]{32}$`));

    const ok = await get(path);
    assert.equal(ok.status, 206);
    assert.equal(ok.body.length, piece.end - piece.start + 1);
    assert.ok(ok.body.subarray(4, 4 + piece.contentLen).equals(blob.subarray(piece.rawStart, piece.rawStart + piece.contentLen)), 'the piece\'s bytes');
    assert.equal(ok.body.at(-1), WRAP_TAIL);

    const unknown = await get(`/peer/file/${'f'.repeat(64)}-${'0'.repeat(32)}`);
    assert.equal(unknown.status, 404);
    const last = path.at(-1) === '0' ? '1' : '0';
    const guesses = [
      `/peer/file/${tf.taskId}`,
      `${path.slice(0, -1)}${last}`,
      `/peer/file/${tf.taskId}-`,
      `/peer/file/${tf.taskId}-${path.slice(-32).toUpperCase()}`,
      `/peer/file/${tf.taskId}-${path.slice(-32)}0`,
      `/peer/file/-${path.slice(-32)}`,
      new PiecePaths(Buffer.alloc(32, 7)).path(tf.taskId),
    ];
    for (const g of guesses) {
      const r = await get(g);
      assert.deepEqual(r, unknown, `${g} is answered like a task that is not here`);
    }
  });

  it('gives each daemon its own secret, and two daemons still swap pieces under the paths they registered', async () => {
    const blob = randomBlob(9 * 1024 * 1024);
    const digest = origin.add(blob);
    const url = origin.blobUrl(digest);
    assert.equal((await getViaProxy('127.0.0.92', a.port, url)).sha256, digest);
    const fetched = origin.requests.get(digest);
    const pulled = await getViaProxy('127.0.0.93', b.port, url);
    assert.equal(pulled.sha256, digest);
    assert.equal(origin.requests.get(digest), fetched, 'the second pull never went to the origin');
    assert.ok(metric(await b.metrics.registry.metrics(), 'dfdaemon_piece_bytes_total', { source: 'peer' }) > 0, 'b took pieces from a');
    assert.equal(metric(await b.metrics.registry.metrics(), 'dfdaemon_piece_failures_total', { source: 'peer' }), 0);

    const id = computeTaskId(url);
    assert.notEqual(a.piecePath(id), b.piecePath(id));
    const paths = front.registered.filter((r) => r.rawUrl === url).map((r) => r.path);
    assert.deepEqual(new Set(paths), new Set([a.piecePath(id), b.piecePath(id)]));
    const { layout } = [...a.store.all()].find((t) => t.taskId === id)!;
    const piece = layout.piece(0);
    const headers = { range: `bytes=${piece.start}-${piece.end}`, pieceNum: '0', pieceSize: String(layout.pieceSize) };
    const other = await request(`http://127.0.0.92:${a.peerPort}${b.piecePath(id)}`, { headers });
    await other.body.dump();
    assert.equal(other.statusCode, 404, 'one daemon\'s name for a task opens nothing at another');
  });
});
