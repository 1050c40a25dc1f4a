// The preheat API's edges: provider auth in each Harbor mode, bad input, aliases, and every way a
// job can fail (unreachable, unknown manifest type, 404 blob, digest mismatch, a registry that
// never answers) ending FAILED with a clear message within the job timeout.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { taskId, filterUrl } from '../shared/protocol/taskid.js';
import type { Supernode } from '../supernode/server.js';
import { freePort, tmpDir, waitFor, type TmpDir } from './fixtures/proc.js';
import { metric, supernodeAt } from './helpers/cluster.js';
import { Cleanups, loopbackIp } from './helpers/e2e.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** A registry stand-in whose every path is scripted by the test. */
async function fakeRegistry(host: string): Promise<{ url: string; routes: Map<string, Handler>; server: Server; close(): Promise<void> }> {
  const routes = new Map<string, Handler>();
  const server = createServer((req, res) => {
    const h = routes.get(req.url ?? '');
    if (h === undefined) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"NOT_FOUND"}]}');
    h(req, res);
  });
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  return {
    url: `http://${host}:${(server.address() as AddressInfo).port}`,
    routes,
    server,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const json = (res: ServerResponse, type: string, body: Buffer): void => void res.writeHead(200, { 'content-type': type, 'content-length': body.length }).end(body);

describe('preheat API: auth, bad input and failing jobs', { timeout: 60_000 }, () => {
  const cleanups = new Cleanups();
  let t: TmpDir;
  let reg: Awaited<ReturnType<typeof fakeRegistry>>;
  let sn: Supernode;
  let base: string;

  const call = async (s: Supernode | string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const root = typeof s === 'string' ? s : `http://${(s.api.server.address() as AddressInfo).address}:${s.apiPort}`;
    const res = await fetch(`${root}${path}`, {
      method,
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let doc: unknown = text;
    try {
      doc = JSON.parse(text);
    } catch {
      /* text */
    }
    return { status: res.status, headers: res.headers, body: doc as Record<string, unknown> };
  };

  /** POST a v1 preheat and wait until it finishes; returns the status view. */
  const preheat = async (url: string, extra: Record<string, unknown> = {}, s: Supernode = sn) => {
    const created = await call(s, 'POST', '/preheats', { type: 'image', url, headers: {}, ...extra });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.ID as string;
    return waitFor(async () => {
      const v = (await call(s, 'GET', `/preheats/${id}`)).body;
      return v.status === 'SUCCESS' || v.status === 'FAILED' ? v : undefined;
    }, { timeoutMs: 20_000, message: `preheat ${id}` });
  };

  before(async () => {
    t = await tmpDir('preheat-api');
    cleanups.push(() => t.cleanup());
    reg = await fakeRegistry(await loopbackIp());
    cleanups.push(() => reg.close());
    sn = await supernodeAt(t.path, await loopbackIp(), 'preheat:\n  jobTimeout: 1s\n');
    cleanups.push(() => sn.close());
    base = `http://${(sn.api.server.address() as AddressInfo).address}:${sn.apiPort}`;
  });

  after(() => cleanups.run());

  it('each Harbor auth mode: NONE, OAUTH (bearer), BASIC ({"<user>":"<password>"}), CUSTOM (one header)', async () => {
    const modes: Array<[yaml: string, ok: Record<string, string>, wrong: Record<string, string>, challenge: RegExp]> = [
      ['{ mode: bearer, token: tok-1 }', { Authorization: 'Bearer tok-1' }, { Authorization: 'Bearer tok-2' }, /^Bearer /],
      ['{ mode: basic, username: harbor, password: pw }', { Authorization: `Basic ${Buffer.from('harbor:pw').toString('base64')}` },
        { Authorization: `Basic ${Buffer.from('harbor:nope').toString('base64')}` }, /^Basic /],
      ['{ mode: header, header: { name: X-Preheat-Key, value: k-1 } }', { 'X-Preheat-Key': 'k-1' }, { 'X-Preheat-Key': 'k-2' }, /X-Preheat-Key/],
    ];
    for (const [yaml, ok, wrong, challenge] of modes) {
      const s = await supernodeAt(t.path, await loopbackIp(), `preheat:\n  auth: ${yaml}\n`);
      try {
        const missing = await call(s, 'GET', '/preheats');
        assert.equal(missing.status, 401, yaml);
        assert.equal(missing.body.error, 'UNAUTHORIZED');
        assert.match(String(missing.body.msg), /preheat API: send .*preheat\.auth\.mode/);
        assert.match(missing.headers.get('www-authenticate') ?? '', challenge);
        const bad = await call(s, 'GET', '/oapi/v1/jobs', undefined, wrong);
        assert.equal(bad.status, 401, yaml);
        assert.doesNotMatch(String(bad.body.msg), /tok-1|k-1|pw/, 'the message never echoes the secret');
        assert.equal((await call(s, 'GET', '/preheats', undefined, ok)).status, 200, yaml);
        assert.equal((await call(s, 'GET', '/healthy')).status, 200, '/healthy needs no credentials');
      } finally {
        await s.close();
      }
    }
    assert.equal((await call(sn, 'GET', '/preheats')).status, 200, 'mode none');
  });

  it('bad input is a 400 that names the problem', async () => {
    const cases: Array<[string, string, unknown, RegExp]> = [
      ['POST', '/preheats', '{"type":"image",', /JSON/i],
      ['POST', '/preheats', { type: 'rpm', url: `${reg.url}/v2/a/manifests/v1` }, /unknown preheat type "rpm": expected "image" or "file"/],
      ['POST', '/preheats', { type: 'image' }, /url is required/],
      ['POST', '/preheats', { type: 'image', url: 'ftp://x/v2/a/manifests/1' }, /http\(s\) URL/],
      ['POST', '/preheats', { type: 'image', url: `${reg.url}/library/nginx:1.25` }, /not an image manifest URL/],
      ['POST', '/preheats', { type: 'image', url: `${reg.url}/v2/a/manifests/v1`, headers: { Authorization: 5 } }, /headers.Authorization must be a string/],
      ['POST', '/preheats', [1, 2], /must be a JSON object/],
      ['POST', '/oapi/v1/jobs', { type: 'sync_peers', args: {} }, /unsupported job type "sync_peers"/],
      ['POST', '/oapi/v1/jobs', { type: 'preheat', args: { type: 'helm', url: `${reg.url}/x` } }, /unknown preheat type "helm"/],
      ['POST', '/oapi/v1/jobs', { type: 'preheat', args: { type: 'image', url: `${reg.url}/v2/a/manifests/v1`, timeout: 'soon' } }, /timeout must be a number/],
    ];
    for (const [method, path, body, msg] of cases) {
      const r = await call(sn, method, path, body);
      assert.equal(r.status, 400, `${path} ${JSON.stringify(body)}`);
      assert.match(String(r.body.msg), msg);
    }
    assert.equal((await call(sn, 'GET', '/preheats/999999')).status, 404);
    assert.equal((await call(sn, 'GET', '/oapi/v1/jobs/abc')).status, 404);
  });

  it('serves /preheats, /api/v1/preheats and /v1/preheats alike; lists and deletes', async () => {
    const url = `${reg.url}/v2/alias/manifests/v1`;
    reg.routes.set('/v2/alias/manifests/v1', (_q, res) => json(res, 'text/html', Buffer.from('<html>')));
    const a = await call(sn, 'POST', '/api/v1/preheats', { type: 'image', url });
    assert.equal(a.status, 201);
    assert.equal(typeof a.body.ID, 'string');
    const viaV1 = await call(sn, 'GET', `/v1/preheats/${a.body.ID as string}`);
    assert.equal(viaV1.body.ID, a.body.ID);
    const viaV2 = await call(sn, 'GET', `/oapi/v1/jobs/${a.body.ID as string}`);
    assert.equal(viaV2.body.id, Number(a.body.ID), 'one job, two views');
    const list = await call(sn, 'GET', '/preheats');
    assert.ok((list.body as unknown as Array<{ ID: string }>).some((j) => j.ID === a.body.ID));
    assert.equal((await call(sn, 'DELETE', `/api/v1/preheats/${a.body.ID as string}`)).status, 200);
    assert.equal((await call(sn, 'GET', `/preheats/${a.body.ID as string}`)).status, 404);
  });

  it('does not hand out again, after a restart, an ID Harbor may still poll', async () => {
    const url = `${reg.url}/v2/restart/manifests/v1`;
    reg.routes.set('/v2/restart/manifests/v1', (_q, res) => json(res, 'text/html', Buffer.from('<html>')));
    const dir = `${t.path}/restart`;
    await mkdir(dir);
    const ip = await loopbackIp();
    const first = await supernodeAt(dir, ip);
    const old = await call(first, 'POST', '/preheats', { type: 'image', url });
    assert.equal(old.status, 201);
    await first.close();
    const second = await supernodeAt(dir, ip);
    try {
      assert.equal((await call(second, 'GET', `/preheats/${old.body.ID as string}`)).status, 404, 'the old job is forgotten');
      const fresh = await call(second, 'POST', '/preheats', { type: 'image', url: `${reg.url}/v2/restart/manifests/v2` });
      assert.equal(fresh.status, 201);
      assert.notEqual(fresh.body.ID, old.body.ID);
      assert.equal((await call(second, 'GET', `/preheats/${old.body.ID as string}`)).status, 404, 'the old ID still names nothing');
      assert.ok(Number(fresh.body.ID) > Number(old.body.ID), 'IDs keep growing across restarts');
    } finally {
      await second.close();
    }
  });

  it('fails clearly: unreachable registry, a non-manifest answer, an unknown manifest type', async () => {
    const closed = await freePort('127.0.0.1');
    const down = await preheat(`http://127.0.0.1:${closed}/v2/library/app/manifests/v1`);
    assert.equal(down.status, 'FAILED');
    assert.match(String(down.errorMsg), /cannot reach http:\/\/127\.0\.0\.1:\d+\/v2\/library\/app\/manifests\/v1: ECONNREFUSED/);
    assert.ok(down.finishTime !== '');

    reg.routes.set('/v2/html/manifests/v1', (_q, res) => json(res, 'text/html', Buffer.from('<html>login</html>')));
    const html = await preheat(`${reg.url}/v2/html/manifests/v1`);
    assert.match(String(html.errorMsg), /text\/html, which is not a JSON manifest/);

    reg.routes.set('/v2/art/manifests/v1', (_q, res) => json(res, 'application/vnd.oci.artifact.manifest.v1+json',
      Buffer.from(JSON.stringify({ mediaType: 'application/vnd.oci.artifact.manifest.v1+json', blobs: [] }))));
    const art = await preheat(`${reg.url}/v2/art/manifests/v1`);
    assert.match(String(art.errorMsg), /unsupported manifest media type "application\/vnd\.oci\.artifact\.manifest\.v1\+json"/);
  });

  it('sends every manifest type in Accept, fails a job whose blob is missing, and keeps the blobs that worked', async () => {
    const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
    const layer = Buffer.from('layer bytes');
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(layer), size: layer.length }],
    }));
    let accept = '';
    reg.routes.set('/v2/half/manifests/v1', (q, res) => {
      accept = q.headers.accept ?? '';
      json(res, 'application/vnd.oci.image.manifest.v1+json', manifest);
    });
    reg.routes.set(`/v2/half/blobs/${sha(config)}`, (_q, res) => json(res, 'application/octet-stream', config));
    const v = await preheat(`${reg.url}/v2/half/manifests/v1`);
    for (const type of ['oci.image.index.v1', 'oci.image.manifest.v1', 'docker.distribution.manifest.list.v2', 'docker.distribution.manifest.v2']) {
      assert.ok(accept.includes(`application/vnd.${type}+json`), `Accept has ${type}`);
    }
    assert.equal(v.status, 'FAILED');
    assert.match(String(v.errorMsg), new RegExp(`1 of 2 blobs failed: ${sha(layer)}: source answered 404`));
    assert.equal(sn.cdn.get(taskId(`${reg.url}/v2/half/blobs/${sha(config)}`))?.status, 'SUCCESS', 'the config is cached all the same');
  });

  it('checks child manifests against their digests', async () => {
    const child = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json', config: { digest: sha('c'), size: 1 }, layers: [] }));
    const index = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json',
      manifests: [{ mediaType: 'application/vnd.docker.distribution.manifest.v2+json', digest: sha('something else'), size: child.length, platform: { os: 'linux', architecture: 'amd64' } }],
    }));
    reg.routes.set('/v2/evil/manifests/v1', (_q, res) => json(res, 'application/vnd.docker.distribution.manifest.list.v2+json', index));
    reg.routes.set(`/v2/evil/manifests/${sha('something else')}`, (_q, res) => json(res, 'application/vnd.docker.distribution.manifest.v2+json', child));
    const v = await preheat(`${reg.url}/v2/evil/manifests/v1`);
    assert.match(String(v.errorMsg), /does not match its digest/);
  });

  it('renews a token that expires between the manifest and a blob, once, through the challenge', async () => {
    const layer = Buffer.from('renewed layer');
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: sha(layer), size: layer.length },
      layers: [],
    }));
    const challenge = `Bearer realm="${reg.url}/token",service="fake",scope="repository:renew/app:pull"`;
    let manifestGets = 0;
    const seen: string[] = [];
    reg.routes.set('/v2/renew/app/manifests/v1', (q, res) => {
      seen.push(`manifest ${q.headers.authorization}`);
      // The first read works with the caller's token; by the time a blob is fetched it has expired.
      if (manifestGets++ > 0 && q.headers.authorization !== 'Bearer fresh') return void res.writeHead(401, { 'www-authenticate': challenge }).end();
      json(res, 'application/vnd.docker.distribution.manifest.v2+json', manifest);
    });
    reg.routes.set(`/v2/renew/app/blobs/${sha(layer)}`, (q, res) => {
      seen.push(`blob ${q.headers.authorization}`);
      if (q.headers.authorization !== 'Bearer fresh') return void res.writeHead(401, { 'www-authenticate': `${challenge},error="invalid_token"` }).end();
      json(res, 'application/octet-stream', layer);
    });
    reg.routes.set('/token?service=fake&scope=repository%3Arenew%2Fapp%3Apull', (_q, res) => json(res, 'application/json', Buffer.from('{"token":"fresh"}')));
    const v = await preheat(`${reg.url}/v2/renew/app/manifests/v1`, { headers: { Authorization: 'Bearer stale' } });
    assert.equal(v.status, 'SUCCESS', String(v.errorMsg));
    assert.deepEqual(seen, ['manifest Bearer stale', 'blob Bearer stale', 'manifest Bearer stale', 'manifest Bearer fresh', 'blob Bearer fresh']);
  });

  it('times out a job whose registry never answers, and DELETE stops a running job', async () => {
    reg.routes.set('/v2/slow/manifests/v1', () => undefined);
    const started = Date.now();
    const v = await preheat(`${reg.url}/v2/slow/manifests/v1`);
    assert.equal(v.status, 'FAILED');
    assert.match(String(v.errorMsg), /preheat timed out after 1s with 0 of \? blobs cached/);
    assert.ok(Date.now() - started < 5_000, 'bounded by preheat.jobTimeout');

    const slowSn = await supernodeAt(t.path, await loopbackIp(), 'preheat:\n  jobTimeout: 1h\n');
    cleanups.push(() => slowSn.close());
    const created = await call(slowSn, 'POST', '/oapi/v1/jobs', { type: 'preheat', args: { type: 'image', url: `${reg.url}/v2/slow/manifests/v1`, timeout: 0 } });
    assert.equal(created.body.state, 'PENDING');
    const again = await call(slowSn, 'POST', '/preheats', { type: 'image', url: `${reg.url}/v2/slow/manifests/v1` });
    assert.equal(Number(again.body.ID), created.body.id, 'a duplicate of a running job joins it');
    const del = await call(slowSn, 'DELETE', `/oapi/v1/jobs/${String(created.body.id)}`);
    assert.equal(del.status, 200);
    assert.equal((await call(slowSn, 'GET', `/oapi/v1/jobs/${String(created.body.id)}`)).status, 404);

    // 35 days is past what a Node timer holds (24.8 days); it must not become "fail now".
    const long = await call(slowSn, 'POST', '/oapi/v1/jobs', { type: 'preheat', args: { type: 'image', url: `${reg.url}/v2/slow/manifests/v1`, timeout: 3e15 } });
    await new Promise((r) => setTimeout(r, 500));
    const still = await call(slowSn, 'GET', `/oapi/v1/jobs/${String(long.body.id)}`);
    assert.notEqual(still.body.state, 'FAILURE', String(JSON.stringify(still.body)));
    assert.equal((await call(slowSn, 'DELETE', `/oapi/v1/jobs/${String(long.body.id)}`)).status, 200);
  });

  it('fetches at most preheat.concurrency blobs at once', async () => {
    const limited = await supernodeAt(t.path, await loopbackIp(), 'preheat:\n  concurrency: 2\n');
    cleanups.push(() => limited.close());
    const layers = Array.from({ length: 6 }, (_, i) => Buffer.from(`layer ${i}`));
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      layers: layers.map((l) => ({ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: sha(l), size: l.length })),
    }));
    reg.routes.set('/v2/many/manifests/v1', (_q, res) => json(res, 'application/vnd.docker.distribution.manifest.v2+json', manifest));
    let active = 0;
    let peak = 0;
    for (const l of layers) {
      reg.routes.set(`/v2/many/blobs/${sha(l)}`, (_q, res) => {
        peak = Math.max(peak, ++active);
        setTimeout(() => {
          active--;
          json(res, 'application/octet-stream', l);
        }, 80);
      });
    }
    const v = await preheat(`${reg.url}/v2/many/manifests/v1`, {}, limited);
    assert.equal(v.status, 'SUCCESS', String(v.errorMsg));
    assert.equal(peak, 2);
  });

  it('counts finished jobs and their blobs by result on /metrics, and unfinished jobs as a gauge', async () => {
    const counted = await supernodeAt(t.path, await loopbackIp());
    cleanups.push(() => counted.close());
    const [kept, missing] = [Buffer.from('counted layer'), Buffer.from('missing layer')];
    const image = (layers: Buffer[]) => Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      layers: layers.map((l) => ({ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: sha(l), size: l.length })),
    }));
    reg.routes.set('/v2/counted/manifests/ok', (_q, res) => json(res, 'application/vnd.docker.distribution.manifest.v2+json', image([kept])));
    reg.routes.set('/v2/counted/manifests/half', (_q, res) => json(res, 'application/vnd.docker.distribution.manifest.v2+json', image([kept, missing])));
    reg.routes.set(`/v2/counted/blobs/${sha(kept)}`, (_q, res) => json(res, 'application/octet-stream', kept));
    assert.equal((await preheat(`${reg.url}/v2/counted/manifests/ok`, {}, counted)).status, 'SUCCESS');
    assert.equal((await preheat(`${reg.url}/v2/counted/manifests/half`, {}, counted)).status, 'FAILED');
    const text = await counted.metrics.registry.metrics();
    assert.equal(metric(text, 'supernode_preheat_jobs_total', { result: 'success', trigger: 'v1' }), 1);
    assert.equal(metric(text, 'supernode_preheat_jobs_total', { result: 'failed', trigger: 'v1' }), 1);
    assert.equal(metric(text, 'supernode_preheat_blobs_total', { result: 'cached' }), 2);
    assert.equal(metric(text, 'supernode_preheat_blobs_total', { result: 'failed' }), 1);
    assert.equal(metric(text, 'supernode_preheat_jobs_unfinished'), 0);
    // The cache gauges follow the CDN within the supernode's 1 s gauge tick.
    await waitFor(async () => metric(await counted.metrics.registry.metrics(), 'supernode_cdn_cached_tasks') === 1 || undefined, { timeoutMs: 5_000, message: 'cached tasks gauge' });
    assert.equal(metric(await counted.metrics.registry.metrics(), 'supernode_cdn_cached_bytes'), kept.length);
    reg.routes.set('/v2/counted/manifests/hang', () => undefined);
    const hanging = await call(counted, 'POST', '/preheats', { type: 'image', url: `${reg.url}/v2/counted/manifests/hang` });
    assert.equal(metric(await counted.metrics.registry.metrics(), 'supernode_preheat_jobs_unfinished'), 1);
    await call(counted, 'DELETE', `/preheats/${hanging.body.ID as string}`);
    assert.equal(metric(await counted.metrics.registry.metrics(), 'supernode_preheat_jobs_unfinished'), 0);
  });

  it('preheats a file URL as the task a dfget with the same -f and identifier computes', async () => {
    const data = Buffer.from('x'.repeat(100_000));
    reg.routes.set('/files/a.bin?Expires=1&Signature=s&v=2', (_q, res) => json(res, 'application/octet-stream', data));
    const url = `${reg.url}/files/a.bin?Expires=1&Signature=s&v=2`;
    const v = await preheat(url, { type: 'file', filter: 'Expires&Signature', identifier: 'build-7' });
    assert.equal(v.status, 'SUCCESS', String(v.errorMsg));
    const id = taskId(filterUrl(url, ['Expires', 'Signature']), { identifier: 'build-7' });
    assert.equal(sn.cdn.get(id)?.fileLength, data.length);
  });

  it('preheat.enabled: false serves no preheat routes', async () => {
    const off = await supernodeAt(t.path, await loopbackIp(), 'preheat:\n  enabled: false\n');
    try {
      assert.equal((await call(off, 'POST', '/preheats', { type: 'image', url: `${reg.url}/v2/a/manifests/v1` })).status, 404);
      assert.equal((await call(off, 'GET', '/_ping')).status, 200);
    } finally {
      await off.close();
    }
    assert.ok(base.startsWith('http://'));
  });
});
