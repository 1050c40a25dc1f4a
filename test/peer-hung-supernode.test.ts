// A supernode that accepts connections but never answers (paused container, SIGSTOP, a blocked
// event loop) must not hold every pull for a minute: registration gives up once the node fails
// a liveness check, and while every node is in its failure window pulls go to the origin. A
// supernode that is merely waiting on a slow origin still answers the check and is waited for.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDfdaemon, type Dfdaemon } from '../dfdaemon/daemon.js';
import { SupernodeClient, type SupernodeClientOptions } from '../dfdaemon/peer/supernode-client.js';
import { type RegisterBody } from '../dfdaemon/peer/supernode-wire.js';
import { parseNodeList } from '../shared/config/dfget-flags.js';
import { loadDfdaemonConfig } from '../shared/config/dfdaemon.js';
import { createLogger } from '../shared/log/index.js';
import type { Supernode } from '../supernode/server.js';
import { metric, supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { getViaProxy } from './helpers/proxy-get.js';

const quiet = createLogger('test', { level: 'silent' });

/** Accepts TCP connections and never says a word: a frozen supernode. */
async function hungNode(): Promise<{ addr: string; accepted: () => number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const s = createServer((sock) => {
    accepted++;
    sockets.add(sock);
    sock.on('error', () => undefined);
    sock.on('close', () => sockets.delete(sock));
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return {
    addr: `127.0.0.1:${(s.address() as AddressInfo).port}`,
    accepted: () => accepted,
    close: async () => {
      for (const sock of sockets) sock.destroy();
      await new Promise((r) => s.close(r));
    },
  };
}

async function daemon(dir: string, host: string, nodes: string, supernode: SupernodeClientOptions = {}): Promise<Dfdaemon> {
  const file = join(dir, `dfdaemon-${host}.yml`);
  writeFileSync(file, `port: 0\nworkHome: ${join(dir, 'df-' + host)}\ndfget_flags: ${JSON.stringify(['--node', nodes])}\nproxies:\n  - regx: blobs/sha256.*\n`);
  return startDfdaemon(loadDfdaemonConfig({ file, defaultFile: null }), { host, log: quiet, supernode });
}

const body = (): RegisterBody => ({ rawUrl: 'http://o/x', taskUrl: 'http://o/x', cid: 'c', ip: '127.0.0.1', port: 1, path: '/peer/file/t', hostName: 'h', version: 'v', superNodeIp: '', headers: [], dfdaemon: true, relay: true, insecure: false, rootCAs: [] });

describe('registration with a supernode that never answers', () => {
  it('gives up within about ten seconds with the default settings', async () => {
    const hung = await hungNode();
    const client = new SupernodeClient(parseNodeList(hung.addr, 'n'), quiet);
    try {
      const t0 = Date.now();
      await assert.rejects(client.register('k', async () => body()), /does not answer \/_ping/);
      const ms = Date.now() - t0;
      assert.ok(ms >= 4_000 && ms < 10_000, `gave up after ${ms} ms`);
      assert.ok(client.allFailing(), 'the node is in its failure window');
    } finally {
      await client.close();
      await hung.close();
    }
  });

  it('keeps waiting for a node that is alive but slow to answer', async () => {
    const node = createHttpServer((req, res) => {
      req.resume();
      if (req.url === '/_ping') return void res.end('OK');
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 200, data: { taskId: 't', fileLength: 1, pieceSize: 4 * 1024 * 1024 } })), 1_500);
    });
    await new Promise<void>((r) => node.listen(0, '127.0.0.1', () => r()));
    const addr = `127.0.0.1:${(node.address() as AddressInfo).port}`;
    const client = new SupernodeClient(parseNodeList(addr, 'n'), quiet, { livenessMs: 200 });
    try {
      const r = await client.register('k', async () => body());
      assert.equal(r.node, addr);
      assert.equal(client.allFailing(), false);
    } finally {
      await client.close();
      node.closeAllConnections();
      await new Promise((r) => node.close(r));
    }
  });
});

describe('dfdaemon pulls with a hung supernode', () => {
  let dir: string;
  let origin: Origin;
  let hung: Awaited<ReturnType<typeof hungNode>>;
  let df: Dfdaemon;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-hung-'));
    origin = await startOrigin();
    hung = await hungNode();
    df = await daemon(dir, '127.0.0.4', hung.addr);
  });
  after(async () => {
    await df?.close();
    await hung?.close();
    await origin?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('the first pull waits for the liveness check only, the next ones not at all', async () => {
    const a = origin.add(randomBlob(300_000));
    const b = origin.add(randomBlob(300_000));
    const t0 = Date.now();
    const first = await getViaProxy('127.0.0.4', df.port, origin.blobUrl(a));
    const firstMs = Date.now() - t0;
    assert.equal(first.sha256, a);
    assert.ok(firstMs < 10_000, `first pull took ${firstMs} ms`);
    const seen = hung.accepted();
    const t1 = Date.now();
    const second = await getViaProxy('127.0.0.4', df.port, origin.blobUrl(b));
    const secondMs = Date.now() - t1;
    assert.equal(second.sha256, b);
    assert.ok(secondMs < 2_000, `second pull took ${secondMs} ms: the failed node was asked again`);
    assert.equal(hung.accepted(), seen, 'the hung node was not contacted for the second pull');
    assert.equal(metric(await df.metrics.registry.metrics(), 'dfdaemon_blobs_total', { via: 'source' }), 2);
  });
});

describe('our supernode answering a registration only once a slow origin answers', () => {
  let dir: string;
  let origin: Origin;
  let slow: Server;
  let sn: Supernode;
  let df: Dfdaemon;
  const blob = randomBlob(300_000);
  let digest: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-slowreg-'));
    origin = await startOrigin();
    digest = origin.add(blob);
    // Holds each GET's response head back 2 s; HEAD (dfdaemon's pull check) answers at once.
    slow = createHttpServer((req, res) => {
      const fwd = () =>
        fetch(`${origin.url}${req.url}`, { method: req.method }).then(async (r) => {
          res.writeHead(r.status, { 'content-length': r.headers.get('content-length') ?? '0' });
          res.end(Buffer.from(await r.arrayBuffer()));
        });
      if (req.method === 'HEAD') void fwd();
      else setTimeout(() => void fwd(), 2_000);
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', () => r()));
    sn = await supernodeAt(dir);
    df = await daemon(dir, '127.0.0.5', `127.0.0.1:${sn.apiPort}`, { livenessMs: 300 });
  });
  after(async () => {
    await df?.close();
    await sn?.close();
    slow?.closeAllConnections();
    await new Promise((r) => slow?.close(r));
    await origin?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('is waited for, and the blob comes by P2P', async () => {
    const url = `http://127.0.0.1:${(slow.address() as AddressInfo).port}/v2/library/test/blobs/sha256:${digest}`;
    const r = await getViaProxy('127.0.0.5', df.port, url);
    assert.equal(r.sha256, digest);
    const m = await df.metrics.registry.metrics();
    assert.equal(metric(m, 'dfdaemon_blobs_total', { via: 'p2p' }), 1);
    assert.equal(metric(m, 'dfdaemon_source_bytes_total'), 0);
  });
});
