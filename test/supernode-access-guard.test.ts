// Private content stays private through the supernode. A task the CDN fetched with credentials
// (or a signed URL) goes only to registrants the origin lets in too, and the download port
// serves a task's pieces only with the token handed out in piece infos: a task ID alone is
// computable from a URL. Against a real docker-registry behind token auth, and a small origin
// whose answers the tests choose (5xx, silence, down, signed URLs).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, get as httpGet, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { probeSource } from '../supernode/cdn/source.js';
import type { Supernode } from '../supernode/server.js';
import { buildImage, pushImage, type BuiltImage } from './fixtures/image.js';
import { tmpDir, waitFor, type TmpDir } from './fixtures/proc.js';
import { startRegistry, type Registry } from './fixtures/registry.js';
import { startTokenIssuer, type TokenIssuer } from './fixtures/token-issuer.js';
import { supernodeAt } from './helpers/cluster.js';
import { Cleanups, e2eSkip, loopbackIp } from './helpers/e2e.js';
import { randomBlob, startOrigin } from './helpers/origin.js';

interface Answer {
  status: number;
  code: number;
  error?: string;
  taskId: string;
}

async function register(api: string, rawUrl: string, cid: string, headers: Record<string, string> = {}, taskUrl?: string, identifier?: string): Promise<Answer> {
  const body = { rawUrl, taskUrl, cid, ip: '127.0.0.10', port: 0, path: `/peer/file/${cid}`, headers, ...(identifier ? { identifier } : {}) };
  const res = await request(`${api}/peer/registry`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const j = (await res.body.json()) as { code: number; error?: string; data?: { taskId: string } };
  return { status: res.statusCode, code: j.code, error: j.error, taskId: j.data?.taskId ?? '' };
}

interface Piece {
  range: string;
  pieceNum: number;
  pieceSize: number;
  path: string;
  cid: string;
  peerPort: number;
}

async function poll(api: string, taskId: string, cid: string): Promise<{ code: number; data?: Piece[]; error?: string }> {
  const res = await request(`${api}/peer/task?taskId=${taskId}&srcCid=${encodeURIComponent(cid)}`);
  return (await res.body.json()) as { code: number; data?: Piece[]; error?: string };
}

/** A HEAD counter around the CDN's own probe: what the origin was asked, and with which token. */
function countingProbe(): { probe: typeof probeSource; calls: { url: string; auth: string }[] } {
  const calls: { url: string; auth: string }[] = [];
  const probe: typeof probeSource = (url, o) => {
    calls.push({ url, auth: o.headers.Authorization ?? '' });
    return probeSource(url, o);
  };
  return { probe, calls };
}

describe('supernode access guard: a token-auth docker-registry', { skip: e2eSkip(), timeout: 120_000 }, () => {
  const cleanups = new Cleanups();
  let t: TmpDir;
  let issuer: TokenIssuer;
  let reg: Registry;
  let img: BuiltImage;
  let sn: Supernode;
  let api: string;
  let blobUrl: string;
  let blob: Buffer;
  const probes = countingProbe();
  const pullToken = (subject: string, repo = 'library/private') => issuer.mint([{ type: 'repository', name: repo, actions: ['pull'] }], { subject });
  const heads = () => reg.requests().filter((r) => r.method === 'HEAD' && r.digest === img.layers[0].digest);

  before(async () => {
    t = await tmpDir('access-guard');
    cleanups.push(() => t.cleanup());
    const ip = await loopbackIp();
    issuer = await startTokenIssuer({ host: ip, service: 'harbor-registry' });
    cleanups.push(() => issuer.stop());
    reg = await startRegistry({ host: ip, auth: issuer.registryAuth });
    cleanups.push(() => reg.stop());
    img = await buildImage({ layers: [300 * 1024], seed: 'access-guard' });
    cleanups.push(() => img.cleanup());
    const push = issuer.mint([{ type: 'repository', name: 'library/private', actions: ['pull', 'push'] }]);
    await pushImage(reg.url, 'library/private', 'v1', img, { headers: { Authorization: `Bearer ${push}` } });
    blob = await readFile(img.layers[0].path);
    blobUrl = `${reg.url}/v2/library/private/blobs/${img.layers[0].digest}`;
    sn = await supernodeAt(t.path, ip, '', [], { probe: probes.probe });
    cleanups.push(() => sn.close());
    api = `http://${ip}:${sn.apiPort}`;
  });
  after(() => cleanups.run());

  it('a registrant without the credentials the origin wants is refused (608, ACCESS_DENIED) and gets no piece; one with its own token is admitted after one HEAD', async () => {
    const a = await register(api, blobUrl, 'peer-a', { Authorization: `Bearer ${pullToken('alice')}` });
    assert.equal(a.code, 200, JSON.stringify(a));
    await waitFor(() => sn.cdn.get(a.taskId)?.status === 'SUCCESS', { timeoutMs: 10_000 });
    assert.equal(probes.calls.length, 0, 'the CDN fetch itself vouches for the first registrant');

    const b = await register(api, blobUrl, 'peer-b');
    assert.deepEqual([b.status, b.code, b.error], [200, 608, 'ACCESS_DENIED'], 'stock dfget and our dfdaemon go to the origin on 608');
    const bp = await poll(api, a.taskId, 'peer-b');
    assert.equal(bp.code, 500);
    assert.equal(bp.error, 'PEER_NOT_REGISTERED');
    assert.equal(bp.data, undefined, 'no piece info for a refused registrant');

    // A token for another repository: the registry says no to this one.
    const d = await register(api, blobUrl, 'peer-d', { Authorization: `Bearer ${pullToken('dave', 'library/other')}` });
    assert.deepEqual([d.code, d.error], [608, 'ACCESS_DENIED']);

    assert.deepEqual(probes.calls.map((c) => c.auth === ''), [true, false], "B's and D's own HEADs");
    reg.resetCounts();
    const before = probes.calls.length;
    const cToken = pullToken('carol');
    const c = await register(api, blobUrl, 'peer-c', { Authorization: `Bearer ${cToken}` });
    assert.equal(c.code, 200, JSON.stringify(c));
    assert.equal(c.taskId, a.taskId);
    assert.deepEqual(probes.calls.slice(before), [{ url: blobUrl, auth: `Bearer ${cToken}` }], 'exactly one HEAD, with C\'s own token');
    await waitFor(() => heads().length === 1 || undefined, { timeoutMs: 5_000, message: 'the registry logged one HEAD' });
    assert.equal(heads()[0].status, 200);
    // A retry within a minute asks nobody.
    assert.equal((await register(api, blobUrl, 'peer-c', { Authorization: `Bearer ${cToken}` })).code, 200);
    assert.equal(probes.calls.length, before + 1);
    const cp = await poll(api, a.taskId, 'peer-c');
    assert.equal(cp.code, 601, JSON.stringify(cp));
  });

  it('the download port: no token or a wrong one is a 404, the token from a poll reply gets the bytes', async () => {
    const a = await register(api, blobUrl, 'peer-e', { Authorization: `Bearer ${pullToken('erin')}` });
    assert.equal(a.code, 200, JSON.stringify(a));
    const p = await poll(api, a.taskId, 'peer-e');
    assert.equal(p.code, 601, JSON.stringify(p));
    const piece = p.data!.find((x) => x.cid.startsWith('cdnnode:'))!;
    assert.match(piece.path, new RegExp(`^/download/${a.taskId.slice(0, 3)}/${a.taskId}\\?token=[A-Za-z0-9_-]{43}$`));
    const dl = `http://${new URL(api).hostname}:${piece.peerPort}`;
    const get = async (path: string) => {
      const res = await request(`${dl}${path}`, { headers: { range: `bytes=${piece.range}` } });
      return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) };
    };
    const bare = `/download/${a.taskId.slice(0, 3)}/${a.taskId}`;
    assert.equal((await get(bare)).status, 404, 'the computable path alone');
    const token = new URL(piece.path, 'http://x').searchParams.get('token')!;
    const wrong = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
    assert.equal((await get(`${bare}?token=${wrong}`)).status, 404, 'a wrong token');
    assert.equal((await get(`${bare}?token=${token.slice(0, 20)}`)).status, 404, 'a short token');
    const ok = await get(piece.path);
    assert.equal(ok.status, 206);
    const [start, end] = piece.range.split('-').map(Number);
    assert.equal(ok.body.length, end - start + 1);
    // Wrapped: 4-byte header, content, 1-byte trailer.
    const at = piece.pieceNum * (piece.pieceSize - 5);
    assert.ok(ok.body.subarray(4, ok.body.length - 1).equals(blob.subarray(at, at + ok.body.length - 5)), `piece ${piece.pieceNum}: the layer's bytes`);
  });
});

/** An origin that wants `Bearer good-*` or a `Signature=good*` URL, and can be made to fail. */
type Mode = 'ok' | '503' | 'silent' | 'login-redirect' | 's3';
async function authOrigin(blob: Buffer): Promise<{ url: string; seen: { method: string; path: string }[]; mode: Mode; server: Server; close(): Promise<void> }> {
  const o = {
    url: '',
    seen: [] as { method: string; path: string }[],
    mode: 'ok' as Mode,
    server: undefined as unknown as Server,
    close: () => {
      o.server.closeAllConnections();
      return new Promise<void>((r) => o.server.close(() => r()));
    },
  };
  o.server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    o.seen.push({ method: req.method ?? '', path: u.pathname + u.search });
    if (o.mode === 'silent') return;
    if (o.mode === '503') return void res.writeHead(503).end();
    const signed = (u.searchParams.get('Signature') ?? '').startsWith('good');
    const ok = /^Bearer good-/.test(req.headers.authorization ?? '') || String(req.headers['private-token'] ?? '').startsWith('good') || signed;
    // An SSO front: the unauthorised are sent to a login page (which itself answers 200).
    if (!ok && o.mode === 'login-redirect') return void res.writeHead(302, { location: '/login' }).end();
    if (!ok) return void res.writeHead(401, { 'www-authenticate': 'Bearer realm="test"' }).end();
    // S3 signs the method: a URL signed for GET refuses a HEAD.
    if (signed && o.mode === 's3' && req.method === 'HEAD') return void res.writeHead(403).end();
    const r = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = r ? Number(r[1]) : 0;
    const end = r && r[2] ? Math.min(Number(r[2]), blob.length - 1) : blob.length - 1;
    res.writeHead(r ? 206 : 200, { 'content-length': end - start + 1, ...(r ? { 'content-range': `bytes ${start}-${end}/${blob.length}` } : {}) });
    res.end(req.method === 'HEAD' ? undefined : blob.subarray(start, end + 1));
  });
  await new Promise<void>((r) => o.server.listen(0, '127.0.0.1', () => r()));
  o.url = `http://127.0.0.1:${(o.server.address() as AddressInfo).port}`;
  return o;
}

describe('supernode access guard: origin failures, signed URLs, restarts, public tasks', () => {
  let t: TmpDir;
  before(async () => {
    t = await tmpDir('access-guard2');
  });
  after(() => t.cleanup());

  it('a guarded task with the origin failing, silent or down: refused with the retryable ACCESS_UNVERIFIED (503); admitted once it answers again', async () => {
    const blob = randomBlob(200_000);
    const origin = await authOrigin(blob);
    const sn = await supernodeAt(t.path, '127.0.0.31', '', [], { probeTimeoutMs: 300 });
    const api = `http://127.0.0.31:${sn.apiPort}`;
    try {
      const url = `${origin.url}/v2/p/blobs/sha256:${createHash('sha256').update(blob).digest('hex')}`;
      const a = await register(api, url, 'a', { Authorization: 'Bearer good-a' });
      assert.equal(a.code, 200);
      await waitFor(() => sn.cdn.get(a.taskId)?.status === 'SUCCESS', { timeoutMs: 10_000 });
      const refusedRetryably = (r: Answer) => assert.deepEqual([r.status, r.code, r.error], [503, 500, 'ACCESS_UNVERIFIED']);

      origin.mode = '503';
      refusedRetryably(await register(api, url, 'b', { Authorization: 'Bearer good-b' }));
      origin.mode = 'silent';
      const t0 = Date.now();
      refusedRetryably(await register(api, url, 'b', { Authorization: 'Bearer good-b' }));
      assert.ok(Date.now() - t0 < 3_000, `bounded by the probe timeout (${Date.now() - t0} ms)`);
      await origin.close();
      refusedRetryably(await register(api, url, 'b', { Authorization: 'Bearer good-b' }));
      assert.equal((await poll(api, a.taskId, 'b')).error, 'PEER_NOT_REGISTERED');

      // Refusals are not remembered: back up, the same registrant gets in.
      origin.mode = 'ok';
      await new Promise<void>((r) => origin.server.listen(Number(new URL(origin.url).port), '127.0.0.1', () => r()));
      assert.equal((await register(api, url, 'b', { Authorization: 'Bearer good-b' })).code, 200);
    } finally {
      await sn.close();
      await origin.close().catch(() => undefined);
    }
  });

  it('a signed URL is the credential: the same URL joins without asking, another signature only with the origin\'s yes', async () => {
    const blob = randomBlob(150_000);
    const origin = await authOrigin(blob);
    const sn = await supernodeAt(t.path, '127.0.0.32');
    const api = `http://127.0.0.32:${sn.apiPort}`;
    try {
      const taskUrl = `${origin.url}/files/a.bin`;
      const signed = (sig: string) => `${taskUrl}?Expires=9&Signature=${sig}`;
      const a = await register(api, signed('good1'), 'a', {}, taskUrl);
      assert.equal(a.code, 200);
      await waitFor(() => sn.cdn.get(a.taskId)?.status === 'SUCCESS', { timeoutMs: 10_000 });
      assert.equal((await register(api, signed('good1'), 'a2', {}, taskUrl)).code, 200);
      assert.equal(origin.seen.filter((s) => s.method === 'HEAD').length, 0, 'the URL the CDN fetched with is its own proof');
      const bad = await register(api, signed('forged'), 'b', {}, taskUrl);
      assert.deepEqual([bad.code, bad.error], [608, 'ACCESS_DENIED']);
      // Without the signature at all, the URL is the task URL: no different from an anonymous one.
      assert.deepEqual([(await register(api, taskUrl, 'c')).code], [608]);
      assert.equal((await register(api, signed('good2'), 'd', {}, taskUrl)).code, 200);
      assert.deepEqual(origin.seen.filter((s) => s.method === 'HEAD').map((s) => s.path), ['/files/a.bin?Expires=9&Signature=forged', '/files/a.bin', '/files/a.bin?Expires=9&Signature=good2']);
    } finally {
      await sn.close();
      await origin.close();
    }
  });

  it('after a restart: a guarded task from disk still asks the origin, a public one does not, and piece paths of the last run are dead', async () => {
    const priv = randomBlob(120_000);
    const origin = await authOrigin(priv);
    const pub = await startOrigin();
    const methods: string[] = [];
    pub.server.on('request', (req) => methods.push(req.method ?? ''));
    const privUrl = `${origin.url}/v2/p/blobs/sha256:${createHash('sha256').update(priv).digest('hex')}`;
    const pubUrl = pub.blobUrl(pub.add(randomBlob(120_000)));
    let sn = await supernodeAt(t.path, '127.0.0.33');
    let api = `http://127.0.0.33:${sn.apiPort}`;
    try {
      const a = await register(api, privUrl, 'a', { Authorization: 'Bearer good-a' });
      const p = await register(api, pubUrl, 'p');
      assert.deepEqual([a.code, p.code], [200, 200]);
      await waitFor(() => sn.cdn.get(a.taskId)?.status === 'SUCCESS' && sn.cdn.get(p.taskId)?.status === 'SUCCESS', { timeoutMs: 10_000 });
      const oldPath = sn.downloadPath(a.taskId);
      await sn.close();
      sn = await supernodeAt(t.path, '127.0.0.33');
      api = `http://127.0.0.33:${sn.apiPort}`;
      assert.equal((await poll(api, a.taskId, 'a')).error, 'TASK_NOT_FOUND', 'the peer must register again');
      const anon = await register(api, privUrl, 'x');
      assert.deepEqual([anon.code, anon.error], [608, 'ACCESS_DENIED'], 'the file on disk is not handed to an anonymous registrant');
      assert.equal((await register(api, privUrl, 'y', { Authorization: 'Bearer good-y' })).code, 200);
      assert.equal((await register(api, pubUrl, 'q')).code, 200);
      assert.equal((await register(api, pubUrl, 'r', { Authorization: 'Bearer whatever' })).code, 200);
      assert.deepEqual(methods, ['GET'], 'the public origin: its one fetch before the restart, no HEAD');
      const res = await request(`http://127.0.0.33:${sn.downloadPort}${oldPath}`, { headers: { range: 'bytes=0-99' } });
      await res.body.dump();
      assert.equal(res.statusCode, 404, "the last run's token");
      const fresh = await request(`http://127.0.0.33:${sn.downloadPort}${sn.downloadPath(a.taskId)}`, { headers: { range: 'bytes=0-99' } });
      await fresh.body.dump();
      assert.equal(fresh.statusCode, 206);
    } finally {
      await sn.close();
      await origin.close();
      await pub.close();
    }
  });

  it('a public task (fetched without credentials): every registrant joins, and the origin is asked nothing', async () => {
    const pub = await startOrigin();
    const methods: string[] = [];
    pub.server.on('request', (req) => methods.push(req.method ?? ''));
    const probes = countingProbe();
    const sn = await supernodeAt(t.path, '127.0.0.34', '', [], { probe: probes.probe });
    const api = `http://127.0.0.34:${sn.apiPort}`;
    try {
      const url = pub.blobUrl(pub.add(randomBlob(100_000)));
      for (const [cid, h] of [['a', {}], ['b', {}], ['c', { Authorization: 'Bearer someone' }], ['d', { Cookie: 'x=1' }]] as const) {
        const r = await register(api, url, cid, h);
        assert.equal(r.code, 200, `${cid}: ${JSON.stringify(r)}`);
      }
      assert.equal(probes.calls.length, 0);
      assert.deepEqual(methods, ['GET']);
    } finally {
      await sn.close();
      await pub.close();
    }
  });
});

/** GET /peer/task for `cid` from another local address than the registration's. */
function pollFrom(port: number, taskId: string, cid: string, localAddress: string): Promise<{ code: number; data?: unknown; error?: string }> {
  return new Promise((resolve, reject) => {
    httpGet({ host: '127.0.0.35', port, path: `/peer/task?taskId=${taskId}&srcCid=${cid}`, localAddress }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => resolve(JSON.parse(body) as { code: number }));
    }).on('error', reject);
  });
}

describe('supernode access guard: a cid is no key', () => {
  it('a poll with a registered cid of a guarded task from another address gets no piece; a public task is not bound to an address', async () => {
    const t = await tmpDir('access-guard3');
    const pub = await startOrigin();
    const priv = randomBlob(100_000);
    const origin = await authOrigin(priv);
    const sn = await supernodeAt(t.path, '127.0.0.35');
    const api = `http://127.0.0.35:${sn.apiPort}`;
    try {
      // Behind a load balancer or a NAT pool one host's polls may come from several addresses.
      const pubUrl = pub.blobUrl(pub.add(randomBlob(100_000)));
      const p = await register(api, pubUrl, 'lb-host');
      assert.equal(p.code, 200);
      await waitFor(() => sn.cdn.get(p.taskId)?.status === 'SUCCESS', { timeoutMs: 10_000 });
      assert.equal((await pollFrom(sn.apiPort, p.taskId, 'lb-host', '127.0.0.37')).code, 601);

      const url = `${origin.url}/v2/p/blobs/sha256:${createHash('sha256').update(priv).digest('hex')}`;
      const a = await register(api, url, 'victim', { Authorization: 'Bearer good-v' });
      assert.equal(a.code, 200);
      await waitFor(() => sn.cdn.get(a.taskId)?.status === 'SUCCESS', { timeoutMs: 10_000 });
      // /api/v1/peers names the cid and its task: all an eavesdropper needs but the address.
      const listed = (await (await request(`${api}/api/v1/peers`)).body.json()) as { ID: string; tasks: string[] }[];
      assert.ok(listed.some((p) => p.ID === 'victim' && p.tasks.includes(a.taskId)));
      const stolen = await pollFrom(sn.apiPort, a.taskId, 'victim', '127.0.0.36');
      assert.equal(stolen.error, 'PEER_NOT_REGISTERED', JSON.stringify(stolen));
      assert.equal(stolen.data, undefined);
      const own = await poll(api, a.taskId, 'victim');
      assert.equal(own.code, 601, 'the registrant itself, from its own address');
    } finally {
      await sn.close();
      await pub.close();
      await origin.close();
      await t.cleanup();
    }
  });
});

describe('supernode access guard: ways around it (review O)', () => {
  let t: TmpDir;
  before(async () => {
    t = await tmpDir('access-guard4');
  });
  after(() => t.cleanup());

  async function guardedTask(host: string, path: string, headers: Record<string, string>, blob = randomBlob(100_000)) {
    const origin = await authOrigin(blob);
    const sn = await supernodeAt(t.path, host);
    const api = `http://${host}:${sn.apiPort}`;
    const url = `${origin.url}${path}`;
    const a = await register(api, url, 'owner', headers);
    assert.equal(a.code, 200, JSON.stringify(a));
    await waitFor(() => sn.cdn.get(a.taskId)?.status === 'SUCCESS', { timeoutMs: 10_000 });
    return { origin, sn, api, url, taskId: a.taskId, close: async () => (await sn.close(), await origin.close()) };
  }

  it('the same task ID from another split of URL and identifier is refused, whatever the origin says of that URL', async () => {
    const blob = randomBlob(100_000);
    const digest = createHash('sha256').update(blob).digest('hex');
    const g = await guardedTask('127.0.0.41', `/v2/p/blobs/sha256:${digest}`, { Authorization: 'Bearer good-owner' }, blob);
    try {
      // A token the origin takes for /v2/ (a public repository's, say) and the rest of the URL as identifier.
      const r = await register(g.api, `${g.origin.url}/v2/`, 'mallory', { Authorization: 'Bearer good-elsewhere' }, `${g.origin.url}/v2/`, `p/blobs/sha256:${digest}`);
      assert.equal(r.taskId === '' || r.taskId === g.taskId, true);
      assert.deepEqual([r.code, r.error], [608, 'ACCESS_DENIED']);
      assert.equal((await poll(g.api, g.taskId, 'mallory')).error, 'PEER_NOT_REGISTERED');
    } finally {
      await g.close();
    }
  });

  it('a redirect is a yes only for a registry blob URL: a login redirect elsewhere lets nobody in', async () => {
    const g = await guardedTask('127.0.0.42', '/files/private.bin', { Authorization: 'Bearer good-owner' });
    try {
      g.origin.mode = 'login-redirect';
      const r = await register(g.api, g.url, 'anon');
      assert.deepEqual([r.code, r.error], [608, 'ACCESS_DENIED']);
    } finally {
      await g.close();
    }
  });

  it('a credential in any other header (PRIVATE-TOKEN) guards the task', async () => {
    const g = await guardedTask('127.0.0.43', '/files/gitlab.bin', { 'PRIVATE-TOKEN': 'good-glpat' });
    try {
      assert.equal(g.sn.cdn.get(g.taskId)?.guarded, true);
      assert.deepEqual([(await register(g.api, g.url, 'anon')).code], [608]);
      assert.equal((await register(g.api, g.url, 'colleague', { 'PRIVATE-TOKEN': 'good-other' })).code, 200);
    } finally {
      await g.close();
    }
  });

  it('a presigned URL that refuses HEAD (S3) is asked with a one-byte GET: another valid signature joins', async () => {
    const blob = randomBlob(100_000);
    const origin = await authOrigin(blob);
    origin.mode = 's3';
    const sn = await supernodeAt(t.path, '127.0.0.44');
    const api = `http://127.0.0.44:${sn.apiPort}`;
    try {
      const taskUrl = `${origin.url}/bucket/a.bin`;
      const a = await register(api, `${taskUrl}?Expires=9&Signature=good1`, 'a', {}, taskUrl);
      assert.equal(a.code, 200);
      await waitFor(() => sn.cdn.get(a.taskId)?.status === 'SUCCESS', { timeoutMs: 10_000 });
      assert.equal((await register(api, `${taskUrl}?Expires=9&Signature=good2`, 'b', {}, taskUrl)).code, 200);
      assert.deepEqual([(await register(api, `${taskUrl}?Expires=9&Signature=forged`, 'c', {}, taskUrl)).code], [608]);
    } finally {
      await sn.close();
      await origin.close();
    }
  });

  it('registrants with the same credentials arriving at once ask the origin once', async () => {
    const g = await guardedTask('127.0.0.45', '/files/burst.bin', { Authorization: 'Bearer good-owner' });
    try {
      const before = g.origin.seen.filter((x) => x.method === 'HEAD').length;
      const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => register(g.api, g.url, `host-${i}`, { Authorization: 'Bearer good-shared' })));
      for (const r of rs) assert.equal(r.code, 200);
      assert.equal(g.origin.seen.filter((x) => x.method === 'HEAD').length - before, 1);
    } finally {
      await g.close();
    }
  });
});
