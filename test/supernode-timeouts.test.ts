import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { buildApi, REQUEST_TIMEOUT_MS } from '../supernode/api/app.js';
import { createSupernodeMetrics } from '../supernode/metrics.js';
import type { Supernode } from '../supernode/server.js';
import type { TaskService } from '../supernode/service/tasks.js';
import { createLogger } from '../shared/log/index.js';
import { supernodeAt } from './helpers/cluster.js';

const SHORT = 1_000;

/** Sends `head` and `body` and then nothing; resolves with what came back and when the socket closed. */
function stall(port: number, head: string, body: string): Promise<{ ms: number; reply: string }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const s = connect(port, '127.0.0.1', () => s.write(head + body));
    let reply = '';
    s.on('data', (d) => (reply += d.toString()));
    s.on('error', () => {});
    s.on('close', () => resolve({ ms: Date.now() - t0, reply }));
    setTimeout(() => {
      s.destroy();
      reject(new Error(`still open after 10 s: ${JSON.stringify(reply)}`));
    }, 10_000).unref();
  });
}

describe('API port request timeout', () => {
  let dir: string;
  let sn: Supernode;
  let slow: Server;
  let slowUrl: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-sn-timeout-'));
    sn = await supernodeAt(dir, '127.0.0.1', '', [], { requestTimeoutMs: SHORT });
    // An origin that takes 2.5 s to answer: a registration waits that long for it.
    slow = createServer((_req, res) => {
      setTimeout(() => res.writeHead(200, { 'content-length': 3 }).end('abc'), 2_500);
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', () => r()));
    slowUrl = `http://127.0.0.1:${(slow.address() as AddressInfo).port}/slow.bin`;
  });
  after(async () => {
    await sn.close();
    slow.closeAllConnections();
    await new Promise<void>((r) => slow.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });

  it('is a minute by default', async () => {
    const app = buildApi({ svc: {} as TaskService, metrics: createSupernodeMetrics(), log: createLogger('test', { level: 'silent' }) });
    try {
      assert.equal(REQUEST_TIMEOUT_MS, 60_000);
      assert.equal(app.server.requestTimeout, 60_000);
    } finally {
      await app.close();
    }
  });

  it('closes a client that sends its head and stalls its body, plain or chunked', async () => {
    const port = sn.apiPort;
    const post = 'POST /peer/registry HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n';
    const [plain, chunked] = await Promise.all([
      stall(port, `${post}Content-Length: 1000\r\n\r\n`, '{"cid":'),
      stall(port, `${post}Transfer-Encoding: chunked\r\n\r\n`, '7\r\n{"cid":\r\n'),
    ]);
    for (const r of [plain, chunked]) {
      assert.match(r.reply, /^HTTP\/1\.1 408/);
      assert.ok(r.ms >= SHORT - 50 && r.ms < SHORT * 3, `closed after ${r.ms} ms`);
    }
  });

  it('does not cut a request that is in and waits long for its answer', async () => {
    const t0 = Date.now();
    const res = await request(`http://127.0.0.1:${sn.apiPort}/peer/registry`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ rawUrl: slowUrl, cid: 'c1', ip: '127.0.0.9', port: 15001, path: '/peer/file/x' }),
    });
    const j = (await res.body.json()) as { code: number };
    assert.equal(res.statusCode, 200);
    assert.equal(j.code, 200);
    assert.ok(Date.now() - t0 >= 2_400, 'it did wait for the origin');
  });
});
