// Preheat under hostile or careless input: a manifest naming too many blobs, a v2 body carrying
// tokens and junk, a burst of jobs, URLs with secrets, a v1 digest, and webhook events that
// cannot name an image. Each must end in a clear answer without hurting the supernode.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Supernode } from '../supernode/server.js';
import { PreheatJob, runJob, type RunDeps } from '../supernode/preheat/job.js';
import { MAX_UNFINISHED } from '../supernode/preheat/jobs.js';
import { HostLimiters } from '../supernode/preheat/limiter.js';
import { createLogger } from '../shared/log/index.js';
import { MAX_BLOBS } from '../supernode/preheat/resolve.js';
import { tmpDir, waitFor, type TmpDir } from './fixtures/proc.js';
import { supernodeAt } from './helpers/cluster.js';
import { Cleanups, loopbackIp } from './helpers/e2e.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const INDEX = 'application/vnd.oci.image.index.v1+json';
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const serve = (type: string, body: Buffer): Handler => (_req, res) => void res.writeHead(200, { 'content-type': type, 'content-length': body.length, 'docker-content-digest': sha(body) }).end(body);

describe('preheat limits', { timeout: 120_000 }, () => {
  const cleanups = new Cleanups();
  let t: TmpDir;
  let sn: Supernode;
  let root: string;
  let reg: string;
  const routes = new Map<string, Handler>();

  const call = async (method: string, path: string, body?: unknown) => {
    const raw = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const res = await fetch(`${root}${path}`, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: raw });
    const text = await res.text();
    return { status: res.status, text, body: (text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : {}) as Record<string, unknown> };
  };
  const finished = (id: string) => waitFor(async () => {
    const v = (await call('GET', `/preheats/${id}`)).body;
    return v.status === 'SUCCESS' || v.status === 'FAILED' ? v : undefined;
  }, { timeoutMs: 60_000, message: `preheat ${id}` });

  before(async () => {
    t = await tmpDir('preheat-limits');
    cleanups.push(() => t.cleanup());
    const registry = createServer((req, res) => {
      const h = routes.get(req.url ?? '');
      if (h === undefined) return void res.writeHead(404).end();
      h(req, res);
    });
    const host = await loopbackIp();
    await new Promise<void>((r) => registry.listen(0, host, () => r()));
    reg = `http://${host}:${(registry.address() as AddressInfo).port}`;
    cleanups.push(async () => {
      registry.closeAllConnections();
      await new Promise((r) => registry.close(r));
    });
    sn = await supernodeAt(t.path, await loopbackIp(), "preheat:\n  jobTimeout: 2m\n  webhooks:\n    scheme: http\n    rules: [{ repository: '**' }]\n");
    cleanups.push(() => sn.close());
    root = `http://${(sn.api.server.address() as AddressInfo).address}:${sn.apiPort}`;
  });
  after(() => cleanups.run());

  it(`an index naming more than ${MAX_BLOBS} blobs fails the job while the API keeps answering`, async () => {
    const children: Buffer[] = [];
    for (let c = 0; c < 5; c++) {
      const layers = Array.from({ length: 2_500 }, (_, i) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(`c${c}-l${i}`), size: 1 }));
      const m = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(`cfg${c}`), size: 1 }, layers }));
      children.push(m);
      routes.set(`/v2/bomb/app/manifests/${sha(m)}`, serve(MANIFEST, m));
    }
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: INDEX, manifests: children.map((m, i) => ({ mediaType: MANIFEST, digest: sha(m), size: m.length, platform: { os: 'linux', architecture: `arch${i}` } })) }));
    routes.set('/v2/bomb/app/manifests/v1', serve(INDEX, index));
    const created = await call('POST', '/preheats', { type: 'image', url: `${reg}/v2/bomb/app/manifests/v1`, headers: {} });
    assert.equal(created.status, 201);
    const started = Date.now();
    const v = await finished(String(created.body.ID));
    assert.equal(v.status, 'FAILED');
    assert.match(String(v.errorMsg), new RegExp(`lists more than ${MAX_BLOBS} blobs`));
    assert.ok(Date.now() - started < 20_000);
    assert.equal((await call('GET', '/_ping')).status, 200);
  });

  it('a v2 job shows the request rebuilt: no registry token, no junk, and deep nesting is no 500', async () => {
    // Built as text: 20,000 levels is past what JSON.stringify can echo, which used to be the 500.
    const deep = `${'['.repeat(20_000)}1${']'.repeat(20_000)}`;
    const created = await call('POST', '/oapi/v1/jobs', `{"type":"preheat","scheduler_cluster_ids":[3],"args":{"type":"file","url":"${reg}/files/a.bin","headers":{"Authorization":"Bearer HARBOR-SECRET"},"pad":"${'x'.repeat(100_000)}","deep":${deep}}}`);
    assert.equal(created.status, 200, created.text.slice(0, 200));
    for (const r of [created, await call('GET', `/oapi/v1/jobs/${String(created.body.id)}`), await call('GET', '/oapi/v1/jobs')]) {
      assert.equal(r.status, 200);
      assert.doesNotMatch(r.text, /HARBOR-SECRET|xxxxxxxxxx/);
    }
    assert.deepEqual((created.body.args as Record<string, unknown>), { type: 'file', url: `${reg}/files/a.bin` });
  });

  it('a file URL\'s password and signature stay out of job errors and the task view', async () => {
    const url = `${reg.replace('http://', 'http://robot:SUPERSECRET@')}/files/b.bin?X-Amz-Signature=SIGSECRET`;
    routes.set('/files/b.bin?X-Amz-Signature=SIGSECRET', (_req, res) => void res.writeHead(500).end());
    const created = await call('POST', '/preheats', { type: 'file', url, headers: {} });
    const v = await finished(String(created.body.ID));
    assert.equal(v.status, 'FAILED');
    assert.match(String(v.errorMsg), /source answered 500/);
    assert.doesNotMatch(JSON.stringify(v), /SUPERSECRET|SIGSECRET/);
    const jobs = (await call('GET', '/preheats')).text;
    assert.doesNotMatch(jobs, /SUPERSECRET|SIGSECRET/);
  });

  it('a v1 digest must be a sha256 and names the manifest read, whatever the tag points at now', async () => {
    const cfg = Buffer.from('{}');
    const layer = Buffer.from('layer');
    const m = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(cfg), size: cfg.length }, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(layer), size: layer.length }] }));
    routes.set(`/v2/dig/app/manifests/${sha(m)}`, serve(MANIFEST, m));
    // The tag has moved on to something that does not exist.
    routes.set('/v2/dig/app/manifests/v1', (_req, res) => void res.writeHead(404).end());
    routes.set(`/v2/dig/app/blobs/${sha(cfg)}`, serve('application/octet-stream', cfg));
    routes.set(`/v2/dig/app/blobs/${sha(layer)}`, serve('application/octet-stream', layer));
    const bad = await call('POST', '/preheats', { type: 'image', url: `${reg}/v2/dig/app/manifests/v1`, headers: {}, digest: 'sha256:bbbb' });
    assert.equal(bad.status, 400);
    const created = await call('POST', '/preheats', { type: 'image', url: `${reg}/v2/dig/app/manifests/v1`, headers: {}, digest: sha(m) });
    const v = await finished(String(created.body.ID));
    assert.equal(v.status, 'SUCCESS', String(v.errorMsg));
  });

  const event = (repo: string, tag: string) => ({
    type: 'PUSH_ARTIFACT',
    event_data: { resources: [{ tag, resource_url: `${reg.replace('http://', '')}/${repo}:${tag}`, digest: sha(`${repo}:${tag}`) }], repository: { repo_full_name: repo, namespace: repo.split('/')[0], name: repo.split('/')[1] } },
  });

  it('webhook events that cannot name an image are ignored with the reason', async () => {
    const url = `${root}/webhooks/harbor`;
    // Harbor never sends these, but a misconfigured registry endpoint can; the event's digest is
    // what is warmed, so only a repository that cannot form a URL is an error.
    for (const [repo, tag] of [['library/NGINX', 'v1'], ['Library/x', 'latest']]) {
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(event(repo, tag)) });
      const body = (await res.json()) as { accepted: unknown[]; ignored: { reason: string }[] };
      assert.equal(res.status, 200, `${repo}:${tag}`);
      assert.deepEqual(body.accepted, []);
      assert.equal(body.ignored.length, 1);
    }
  });

  it('a registry that never answers holds up only its own preheats', async () => {
    const stuck = createServer(() => undefined);
    await new Promise<void>((r) => stuck.listen(0, '127.0.0.1', () => r()));
    const stuckUrl = `http://127.0.0.1:${(stuck.address() as AddressInfo).port}`;
    const ids: string[] = [];
    try {
      // Twice the per-registry slots: every slot waits on the stuck registry's 30 s timeout.
      for (let i = 0; i < 16; i++) {
        const r = await call('POST', '/preheats', { type: 'image', url: `${stuckUrl}/v2/stuck/app/manifests/t${i}`, headers: {} });
        assert.equal(r.status, 201);
        ids.push(String(r.body.ID));
      }
      const cfg = Buffer.from('{"os":"linux"}');
      const layer = Buffer.from('a layer of a healthy registry');
      const m = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(cfg), size: cfg.length }, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(layer), size: layer.length }] }));
      routes.set('/v2/healthy/app/manifests/v1', serve(MANIFEST, m));
      routes.set(`/v2/healthy/app/blobs/${sha(cfg)}`, serve('application/octet-stream', cfg));
      routes.set(`/v2/healthy/app/blobs/${sha(layer)}`, serve('application/octet-stream', layer));
      const started = Date.now();
      const created = await call('POST', '/preheats', { type: 'image', url: `${reg}/v2/healthy/app/manifests/v1`, headers: {} });
      assert.equal(created.status, 201);
      const v = await finished(String(created.body.ID));
      assert.equal(v.status, 'SUCCESS', String(v.errorMsg));
      assert.ok(Date.now() - started < 10_000, `the healthy registry's job took ${Date.now() - started} ms`);
    } finally {
      for (const id of ids) await call('DELETE', `/preheats/${id}`);
      stuck.closeAllConnections();
      await new Promise((r) => stuck.close(r));
    }
  });

  it(`refuses a job past ${MAX_UNFINISHED} unfinished ones with 429 TOO_MANY_REQUESTS`, async () => {
    const ids: string[] = [];
    for (let i = 0; i < MAX_UNFINISHED + 5; i++) {
      // A registry that never answers: each job stays unfinished.
      routes.set(`/v2/hang/app/manifests/t${i}`, () => undefined);
      const r = await call('POST', '/preheats', { type: 'image', url: `${reg}/v2/hang/app/manifests/t${i}`, headers: {} });
      if (r.status === 201) ids.push(String(r.body.ID));
      else {
        assert.equal(r.status, 429);
        assert.equal(r.body.error, 'TOO_MANY_REQUESTS');
      }
    }
    assert.ok(ids.length <= MAX_UNFINISHED && ids.length >= MAX_UNFINISHED - 5, `${ids.length} accepted`);
    // A push event refused for capacity makes the delivery fail, so the sender tries it again.
    const hook = await fetch(`${root}/webhooks/harbor`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(event('library/busy', 'v1')) });
    assert.equal(hook.status, 429);
    assert.match(JSON.stringify(await hook.json()), /still running; retry/);
    const other = await call('POST', '/preheats', { type: 'image', url: 'http://127.0.0.1:9/v2/other/app/manifests/v1', headers: {} });
    assert.equal(other.status, 201, 'another registry is not refused for this one');
    await call('DELETE', `/preheats/${String(other.body.ID)}`);
    for (const id of ids) await call('DELETE', `/preheats/${id}`);
    const again = await call('POST', '/preheats', { type: 'image', url: `${reg}/v2/hang/app/manifests/t0`, headers: {} });
    assert.equal(again.status, 201, 'deleting jobs makes room');
    await call('DELETE', `/preheats/${String(again.body.ID)}`);
  });
});

describe('a finished preheat job', () => {
  it('forgets the registry token it was given, whether it succeeded or failed', async () => {
    for (const status of ['SUCCESS', 'SOURCE_ERROR'] as const) {
      const seen: Array<Record<string, string>> = [];
      const cdn = {
        ensure(t: { headers: Record<string, string> }) {
          seen.push({ ...t.headers });
          return { status, fileLength: 5, failure: status === 'SUCCESS' ? undefined : { code: 'SOURCE', message: 'gone' } };
        },
      };
      const deps = { cdn, limiters: new HostLimiters(2), tls: { insecure: false, rootCAs: [] }, log: createLogger('test', { level: 'silent' }), now: Date.now } as unknown as RunDeps;
      const job = new PreheatJob(1, {
        type: 'file', url: 'http://198.18.0.1/files/a.bin', headers: { Authorization: 'Bearer HARBOR-SECRET' }, filter: [], identifier: '',
        platforms: [], timeoutMs: 10_000, trigger: 'v1', digest: '', credentials: null,
      }, Date.now());
      await runJob(job, deps);
      assert.equal(job.state, status === 'SUCCESS' ? 'SUCCESS' : 'FAILED');
      assert.deepEqual(seen, [{ Authorization: 'Bearer HARBOR-SECRET' }], 'the CDN fetch still carried the token');
      assert.doesNotMatch(JSON.stringify(job), /HARBOR-SECRET/);
    }
  });
});
