// A request passed through to the registry waits for its answer. An upload's answer comes only
// after its last byte, and distribution may think for minutes before it (moving a large layer
// into place on object storage), so an upload gets a far longer wait than a GET or a HEAD.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDfdaemon, type Dfdaemon } from '../dfdaemon/daemon.js';
import { loadDfdaemonConfig } from '../shared/config/dfdaemon.js';
import { createLogger } from '../shared/log/index.js';
import { writeFileSync } from 'node:fs';

const HOST = '127.0.0.1';
const THINK_MS = 800;

/** A registry stand-in that reads the whole body, then answers after THINK_MS. */
function slowRegistry(): Server {
  return createServer((req, res) => {
    let got = 0;
    req.on('data', (c: Buffer) => (got += c.length));
    req.on('end', () => setTimeout(() => res.writeHead(req.method === 'PUT' ? 201 : 200, { 'x-got': String(got), 'content-length': 0 }).end(), THINK_MS));
  });
}

function viaProxy(port: number, url: string, method: string, body?: Buffer, chunked = false): Promise<{ status: number; got: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const headers: Record<string, string> = { host: u.host };
    if (body && !chunked) headers['content-length'] = String(body.length);
    const req = request({ host: HOST, port, method, path: url, headers }, (r) => {
      let text = '';
      r.setEncoding('utf8');
      r.on('data', (c) => (text += c));
      r.once('end', () => resolve({ status: r.statusCode ?? 0, got: r.headers['x-got'] as string | undefined, body: text }));
    });
    req.once('error', reject);
    if (body) for (let off = 0; off < body.length; off += 64 * 1024) req.write(body.subarray(off, off + 64 * 1024));
    req.end();
  });
}

describe('dfdaemon pass-through waits', () => {
  let dir: string;
  let upstream: Server;
  let base: string;
  let df: Dfdaemon;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-passidle-'));
    upstream = slowRegistry();
    await new Promise<void>((r) => upstream.listen(0, HOST, r));
    base = `http://${HOST}:${(upstream.address() as AddressInfo).port}`;
    const file = join(dir, 'dfdaemon.yml');
    // No proxies rule: everything passes through; the supernode it names listens nowhere.
    writeFileSync(file, `port: 0\nworkHome: ${join(dir, 'df')}\ndfget_flags: ["--node", "${HOST}:1"]\n`);
    df = await startDfdaemon(loadDfdaemonConfig({ file, defaultFile: null }), {
      host: HOST,
      log: createLogger('test', { level: 'silent' }),
      proxyLimits: { passIdleMs: THINK_MS / 4, passBodyIdleMs: 10 * THINK_MS },
    });
  });

  after(async () => {
    await df?.close();
    await new Promise((r) => upstream?.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it('answers 504 for a GET whose upstream stays silent past passIdleMs', async () => {
    const r = await viaProxy(df.port, `${base}/v2/lib/manifests/latest`, 'GET');
    assert.equal(r.status, 504, r.body);
    assert.match(r.body, /SOURCE_TIMEOUT/);
  });

  it("waits for an upload's answer as long as passBodyIdleMs allows, with a length or chunked", async () => {
    const body = Buffer.alloc(3 * 1024 * 1024, 7);
    const sized = await viaProxy(df.port, `${base}/v2/lib/blobs/uploads/u1?digest=sha256:00`, 'PUT', body);
    assert.equal(sized.status, 201, sized.body);
    assert.equal(sized.got, String(body.length));
    const chunked = await viaProxy(df.port, `${base}/v2/lib/blobs/uploads/u2`, 'PATCH', body, true);
    assert.equal(chunked.status, 200, chunked.body);
    assert.equal(chunked.got, String(body.length));
  });
});
