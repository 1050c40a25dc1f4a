import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import type { Supernode } from '../supernode/server.js';
import { supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';

interface Res {
  status: number;
  json: { code?: number; msg?: string; error?: string; data?: unknown } | null;
  text: string;
}

describe('supernode API: bad input gets a clear 4xx and the server keeps serving', () => {
  let dir: string;
  let sn: Supernode;
  let origin: Origin;
  let base: string;

  const call = async (method: 'GET' | 'POST', path: string, body?: string, type = 'application/json'): Promise<Res> => {
    const res = await request(`${base}${path}`, { method, body, headers: body !== undefined ? { 'content-type': type } : {} });
    const text = await res.body.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.statusCode, json, text };
  };
  const reg = (o: Record<string, unknown>) => call('POST', '/peer/registry', JSON.stringify(o));
  const good = { rawUrl: 'http://x.test/a', cid: 'c1', ip: '127.0.0.9', port: 0, path: '/peer/file/x' };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-api-'));
    sn = await supernodeAt(dir, '127.0.0.1');
    origin = await startOrigin();
    base = `http://127.0.0.1:${sn.apiPort}`;
  });
  after(async () => {
    await sn.close();
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  const bad: Array<[string, () => Promise<Res>, number, RegExp]> = [
    ['registry: empty body', () => reg({}), 400, /rawUrl/],
    ['registry: rawUrl not a URL', () => reg({ ...good, rawUrl: 'nope' }), 400, /rawUrl/],
    ['registry: rawUrl not http', () => reg({ ...good, rawUrl: 'ftp://x/y' }), 400, /rawUrl/],
    ['registry: ip not an IP', () => reg({ ...good, ip: 'abc' }), 400, /ip/],
    ['registry: port wrong type', () => reg({ ...good, port: 'x' }), 400, /port/],
    ['registry: port out of range', () => reg({ ...good, port: 70000 }), 400, /port/],
    ['registry: cid wrong type', () => reg({ ...good, cid: { a: 1 } }), 400, /cid/],
    ['registry: malformed header', () => reg({ ...good, headers: ['no-colon'] }), 400, /headers/],
    ['registry: rootCAs not PEM', () => reg({ ...good, rootCAs: ['aGVsbG8='] }), 400, /rootCAs/],
    ['registry: body not JSON', () => call('POST', '/peer/registry', '{"rawUrl":'), 400, /JSON/i],
    ['registry: body is an array', () => call('POST', '/peer/registry', '[1,2]'), 400, /object/],
    ['registry: huge body', () => call('POST', '/peer/registry', JSON.stringify({ x: 'a'.repeat(2 * 1024 * 1024) })), 413, /.+/],
    ['registry: unsupported type', () => call('POST', '/peer/registry', '<x/>', 'application/xml'), 415, /.+/],
    ['task: missing taskId', () => call('GET', '/peer/task?srcCid=a'), 400, /taskId/],
    ['task: unknown task', () => call('GET', `/peer/task?srcCid=a&taskId=${'f'.repeat(64)}`), 404, /not found/],
    ['task: result not a number', () => call('GET', '/peer/task?srcCid=a&taskId=x&range=0-1&result=abc'), 400, /result/],
    ['task: status out of range', () => call('GET', '/peer/task?srcCid=a&taskId=x&status=9'), 400, /status/],
    ['piece/suc: missing cid', () => call('GET', '/peer/piece/suc?taskId=x&pieceRange=0-1'), 400, /cid/],
    ['piece/suc: unknown task', () => call('GET', '/peer/piece/suc?taskId=x&cid=a&pieceRange=0-1'), 404, /not found/],
    // dfget's FILE_NOT_EXIST report has an empty range: accepted, so only the task is unknown here.
    ['piece/error: empty range, unknown task', () => call('GET', '/peer/piece/error?taskId=x&srcCid=a&range='), 404, /not found/],
    ['service/down: unknown task', () => call('GET', '/peer/service/down?taskId=x&cid=a'), 404, /not found/],
    ['unknown route', () => call('GET', '/nope'), 404, /no route/],
  ];
  for (const [name, fn, status, msg] of bad) {
    it(name, async () => {
      const r = await fn();
      assert.equal(r.status, status, `${name}: ${r.text}`);
      assert.match(r.json?.msg ?? r.text, msg);
      assert.ok(r.json?.error, 'carries a stable error code');
      const ping = await call('GET', '/_ping');
      assert.equal(ping.text, 'OK');
    });
  }

  it('answers version, ping and metrics', async () => {
    assert.equal((await call('GET', '/_ping')).text, 'OK');
    assert.equal((await call('GET', '/v1.24/_ping')).text, 'OK', 'routes work under a /v<ver> prefix');
    const v = await call('GET', '/version');
    assert.ok(v.json && 'Version' in v.json);
    const m = await call('GET', '/metrics');
    assert.match(m.text, /supernode_registrations_total/);
    const bad = await call('GET', '/api/v1/tasks/%ZZ');
    assert.equal(bad.status, 400);
    assert.equal((bad.json as { error?: string }).error, 'BAD_REQUEST', 'an undecodable URL gets the usual envelope');
  });

  it('answers 607 for a source 404 and remembers it for failAccessInterval', async () => {
    const url = `${origin.url}/v2/x/blobs/sha256:${'0'.repeat(64)}`;
    const r1 = await reg({ ...good, rawUrl: url });
    assert.equal(r1.status, 200);
    assert.equal(r1.json?.code, 607);
    const t0 = Date.now();
    const r2 = await reg({ ...good, rawUrl: url, cid: 'c2' });
    assert.equal(r2.json?.code, 607);
    assert.ok(Date.now() - t0 < 200, 'the remembered failure is answered at once');
  });

  it('answers 608 (need auth) for a source that wants credentials, so dfget goes to the source at once', async () => {
    const locked = createServer((_req, res) => void res.writeHead(401, { 'www-authenticate': 'Basic realm="x"' }).end());
    await new Promise<void>((r) => locked.listen(0, '127.0.0.1', () => r()));
    try {
      const r = await reg({ ...good, rawUrl: `http://127.0.0.1:${(locked.address() as AddressInfo).port}/private.bin` });
      assert.equal(r.status, 200);
      assert.equal(r.json?.code, 608, r.text);
    } finally {
      locked.closeAllConnections();
      await new Promise((res) => locked.close(res));
    }
  });

  it('accepts dfget-style registration (form or JSON with dfget casing) and hands out pieces', async () => {
    const d = origin.add(randomBlob(5 * 1024 * 1024));
    const url = origin.blobUrl(d);
    const form = new URLSearchParams({ rawUrl: url, taskUrl: url, cid: '127.0.0.9-1-1', ip: '127.0.0.9', port: '15001', path: '/peer/file/a-1', superNodeIp: '127.0.0.1', version: '1.0.6' });
    form.append('headers', 'X-A:1');
    form.append('headers', 'X-B:2');
    const r = await call('POST', '/peer/registry', form.toString(), 'application/x-www-form-urlencoded');
    assert.equal(r.json?.code, 200, r.text);
    const data = r.json?.data as { taskId: string; fileLength: number; pieceSize: number; cdnSource: string };
    assert.equal(data.fileLength, 5 * 1024 * 1024);
    // At least 64 pieces per blob, but never under 256 KiB (shared/protocol/pieces.ts).
    assert.equal(data.pieceSize, 256 * 1024);
    // Ours: tells our dfdaemons a busy source may be reported as such; Go's decoder skips it.
    assert.equal((data as { busyReports?: boolean }).busyReports, true);
    // dfget's first poll: unescaped query in its fixed field order, result 502 status 700.
    let t: Res;
    const deadline = Date.now() + 5000;
    do {
      t = await call('GET', `/peer/task?srcCid=127.0.0.9-1-1&dstCid=&range=&result=502&status=700&taskId=${data.taskId}`);
    } while (t.json?.code === 602 && Date.now() < deadline);
    assert.equal(t.json?.code, 601, t.text);
    const pieces = t.json?.data as Array<{ range: string; pieceNum: number; pieceMd5: string; peerIp: string; path: string; cid: string; downLink: unknown }>;
    assert.ok(pieces.length >= 1);
    // Go decodes these into ints: a string there makes stock dfget drop the whole answer.
    for (const k of ['pieceNum', 'pieceSize', 'peerPort', 'downLink'] as const) assert.equal(typeof (pieces[0] as Record<string, unknown>)[k], 'number', k);
    assert.equal(pieces[0].peerIp, '127.0.0.1', 'the CDN is where this peer reached the supernode');
    assert.match(pieces[0].path, /^\/download\/[0-9a-f]{3}\/[0-9a-f]{64}\?token=[A-Za-z0-9_-]{43}$/);
    assert.match(pieces[0].pieceMd5, /^[0-9a-f]{32}:\d+$/);
    assert.match(pieces[0].cid, /^cdnnode:/);
  });

  it('/api/v1 peers: create, list, get, delete; tasks: get and delete', async () => {
    const created = await call('POST', '/api/v1/peers', JSON.stringify({ IP: '127.0.0.20', hostName: 'h1', port: 15001, version: '1.0.6' }));
    assert.equal(created.status, 201);
    const id = (created.json as unknown as { ID: string }).ID;
    assert.match(id, /^h1-127\.0\.0\.20-/);
    assert.equal((await call('POST', '/api/v1/peers', JSON.stringify({ IP: 'x' }))).status, 400);
    const list = await call('GET', '/api/v1/peers?pageSize=1000&sortKey=created&sortDirect=DESC');
    assert.ok((list.json as unknown as { ID: string }[]).some((p) => p.ID === id));
    assert.equal((await call('GET', '/api/v1/peers?sortKey=bogus')).status, 400);
    assert.equal((await call('GET', `/api/v1/peers/${id}`)).status, 200);
    const del = await request(`${base}/api/v1/peers/${id}`, { method: 'DELETE' });
    await del.body.dump();
    assert.equal(del.statusCode, 204);
    assert.equal((await call('GET', `/api/v1/peers/${id}`)).status, 404);

    const d = origin.add(randomBlob(300_000));
    const r = await reg({ ...good, rawUrl: origin.blobUrl(d), cid: 'api-task' });
    const taskId = (r.json?.data as { taskId: string }).taskId;
    const info = await call('GET', `/api/v1/tasks/${taskId}`);
    assert.equal(info.status, 200);
    assert.equal((info.json as unknown as { rawURL: string }).rawURL, origin.blobUrl(d));
    assert.equal((await call('GET', `/api/v1/tasks/${'0'.repeat(64)}`)).status, 404);
    const gone = await request(`${base}/api/v1/tasks/${taskId}?full=true`, { method: 'DELETE' });
    await gone.body.dump();
    assert.equal(gone.statusCode, 204);
    assert.equal((await call('GET', `/api/v1/tasks/${taskId}`)).status, 404);
    assert.equal((await call('GET', '/_ping')).text, 'OK');
  });
});
