import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { randomBlob } from './helpers/origin.js';
import { registerPeer, useOrigin } from './helpers/sn-fixture.js';

describe('an origin that wants credentials, and registrants that bring them or not', () => {
  const ctx = useOrigin('svc-auth', '');
  const blob = randomBlob(50_000);
  const hits: string[] = [];
  let origin: Server;
  let base = '';

  before(async () => {
    // A refusal takes a while, so registrants arriving meanwhile join the refused fetch.
    origin = createServer((req, res) => {
      const auth = req.headers.authorization ?? '';
      hits.push(auth);
      if (auth !== 'Bearer ok') return void setTimeout(() => res.writeHead(401).end(), 150);
      res.writeHead(200, { 'content-length': blob.length }).end(blob);
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  });
  after(async () => {
    origin.closeAllConnections();
    await new Promise((r) => origin.close(r));
  });

  const reg = (path: string, cid: string, headers?: string[]) =>
    registerPeer(ctx.api, { rawUrl: `${base}${path}`, cid, ip: '127.0.0.61', port: 0, ...(headers ? { headers } : {}) });
  const later = <T>(ms: number, f: () => Promise<T>) => new Promise<T>((r) => setTimeout(() => r(f()), ms));

  it('registrants with credentials are not failed by an anonymous one that came first; the rest do not retry', async () => {
    hits.length = 0;
    const auth = ['Authorization:Bearer ok'];
    const [anon, ...withAuth] = await Promise.all([
      reg('/a', 'anon'),
      later(20, () => reg('/a', 'b', auth)),
      later(20, () => reg('/a', 'c', auth)),
      later(20, () => reg('/a', 'd', auth)),
    ]);
    assert.equal(anon.code, 608);
    assert.deepEqual(withAuth.map((r) => r.code), [200, 200, 200]);
    assert.deepEqual(hits, ['', 'Bearer ok'], 'one refused fetch, one fetch with the credentials');
    assert.equal(ctx.sn.cdn.get(withAuth[0].taskId)?.req.headers.Authorization, 'Bearer ok');

    // Registrants that bring nothing new get the refusal without asking the origin again.
    hits.length = 0;
    const results = await Promise.all([
      reg('/b', 'x1', ['Authorization:Bearer bad']),
      later(20, () => reg('/b', 'x2')),
      later(20, () => reg('/b', 'x3', ['Authorization:Bearer bad'])),
    ]);
    assert.deepEqual(results.map((r) => r.code), [608, 608, 608]);
    assert.deepEqual(hits, ['Bearer bad']);
  });
});

describe('a registration that names the md5 the content must have', () => {
  const ctx = useOrigin('svc-md5', '');
  const blob = randomBlob(300_000);
  const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
  let origin: Server;
  let base = '';

  before(async () => {
    origin = createServer((_req, res) => void res.writeHead(200, { 'content-length': blob.length }).end(blob));
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  });
  after(async () => {
    origin.closeAllConnections();
    await new Promise((r) => origin.close(r));
  });

  it('fails the CDN task when the content has another md5, and succeeds with the right one', async () => {
    const wrong = await registerPeer(ctx.api, { rawUrl: `${base}/f`, cid: 'w', ip: '127.0.0.62', port: 0, md5: md5(Buffer.from('other')) });
    const right = await registerPeer(ctx.api, { rawUrl: `${base}/f`, cid: 'r', ip: '127.0.0.62', port: 0, md5: md5(blob) });
    assert.equal(wrong.code, 200);
    assert.notEqual(wrong.taskId, right.taskId, 'the md5 is part of the task ID');
    const ended = (id: string) => new Promise<string>((resolve) => {
      const t = ctx.sn.cdn.get(id)!;
      if (t.status === 'SUCCESS' || t.status === 'FAILED') return resolve(t.status);
      t.once('end', () => resolve(t.status));
    });
    assert.equal(await ended(wrong.taskId), 'FAILED');
    assert.match(ctx.sn.cdn.get(wrong.taskId)?.failure?.message ?? '', /md5/);
    assert.equal(await ended(right.taskId), 'SUCCESS');
  });
});
