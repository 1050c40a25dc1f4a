// Harbor's preheat contract, replayed: the requests Harbor v2.1-v2.11 (Dragonfly 1.x /preheats)
// and v2.12+ (Dragonfly 2 /oapi/v1/jobs) send, their answers decoded with Harbor's own rules
// (Go's encoding/json, the status mappings of each version, 208), against a real docker-registry
// behind token auth. Afterwards three dfdaemon peers pull the image (skopeo through one of
// them) and the registry serves not one blob byte.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Dfdaemon } from '../dfdaemon/daemon.js';
import type { Supernode } from '../supernode/server.js';
import { addHosts } from './fixtures/hosts.js';
import { buildImage, buildOciImage, pushImage, type BuiltImage } from './fixtures/image.js';
import { sleep, tmpDir, type TmpDir } from './fixtures/proc.js';
import { startRegistry, type Registry } from './fixtures/registry.js';
import { skopeoCopy, verifyCopiedDir } from './fixtures/skopeo.js';
import { startTokenIssuer, type TokenIssuer } from './fixtures/token-issuer.js';
import { dfdaemonAt, metric, supernodeAt } from './helpers/cluster.js';
import { Cleanups, e2eSkip, loopbackIp } from './helpers/e2e.js';
import { getViaProxy } from './helpers/proxy-get.js';

const KiB = 1024;
const MiB = 1024 * KiB;

// ---------------------------------------------------------------- Harbor's side, as Go decodes it

/** encoding/json into a struct field: the exact key first, else a case-insensitive match. */
function goField(doc: unknown, key: string): unknown {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new Error(`json: cannot unmarshal ${JSON.stringify(doc)} into a struct`);
  const rec = doc as Record<string, unknown>;
  if (Object.hasOwn(rec, key)) return rec[key];
  const k = Object.keys(rec).find((x) => x.toLowerCase() === key.toLowerCase());
  return k === undefined ? undefined : rec[k];
}

function goString(doc: unknown, key: string): string {
  const v = goField(doc, key);
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new Error(`json: cannot unmarshal ${typeof v} into Go struct field .${key} of type string`);
  return v;
}

function goInt(doc: unknown, key: string): number {
  const v = goField(doc, key);
  if (v === undefined || v === null) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new Error(`json: cannot unmarshal ${typeof v} into Go struct field .${key} of type int`);
  return v;
}

/** time.Time's UnmarshalJSON: RFC3339 or nothing. */
function goTime(doc: unknown, key: string): string {
  const v = goField(doc, key);
  if (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/.test(v)) {
    throw new Error(`parsing time ${JSON.stringify(v)} as RFC3339`);
  }
  return v;
}

interface PreheatImage {
  type: string;
  url: string;
  headers: Record<string, string>;
  image: string;
  tag: string;
  digest: string;
}

interface HarborStatus {
  taskId: string;
  status: string;
  error: string;
}

/** provider/client/http_client.go: 30 s, JSON, any non-2xx is an error, 208 kept apart. */
async function harborCall(url: string, cred: Record<string, string>, body?: unknown): Promise<{ status: number; text: string }> {
  const res = await fetch(url, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { Accept: 'application/json', ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...cred },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  if (Math.floor(res.status / 100) !== 2) throw new Error(`${body === undefined ? 'GET' : 'POST'} ${JSON.stringify(url)} error: ${res.status} ${text}`);
  return { status: res.status, text };
}

interface Driver {
  health(): Promise<void>;
  preheat(img: PreheatImage): Promise<HarborStatus>;
  check(taskId: string): Promise<HarborStatus>;
}

/** provider/dragonfly.go of Harbor v2.<minor> (1 to 11): the Dragonfly 1.x API. */
function v1Driver(endpoint: string, minor: number, cred: Record<string, string> = {}): Driver {
  const base = endpoint.replace(/\/$/, '');
  const get = async (taskId: string): Promise<{ status: string; errorMsg: string }> => {
    const doc: unknown = JSON.parse((await harborCall(`${base}/preheats/${taskId}`, cred)).text);
    goString(doc, 'ID');
    goString(doc, 'startTime');
    goString(doc, 'finishTime');
    return { status: goString(doc, 'Status'), errorMsg: minor >= 8 ? goString(doc, 'errorMsg') : '' };
  };
  return {
    async health() {
      await harborCall(`${base}/_ping`, cred);
    },
    async preheat(img) {
      const res = await harborCall(`${base}/preheats`, cred, img);
      const id = goString(JSON.parse(res.text), 'ID');
      // fa8a0d09 (v2.3.0): 208 means already preheated.
      return { taskId: id, status: res.status === 208 && minor >= 3 ? 'SUCCESS' : 'PENDING', error: '' };
    },
    async check(taskId) {
      let s = await get(taskId);
      const marker = 'preheat task already exists, id:';
      if (s.errorMsg.includes(marker)) {
        const begin = s.errorMsg.indexOf(marker) + marker.length;
        const end = s.errorMsg.lastIndexOf('"}');
        if (end - begin <= 0) throw new Error(`can't find existed task id by error msg:${s.errorMsg}`);
        taskId = s.errorMsg.slice(begin, end);
        s = await get(taskId);
      }
      let status = s.status;
      if (status === 'WAITING') status = 'PENDING';
      else if (minor >= 8 && status === 'FAILED') status = 'FAIL';
      return { taskId, status, error: s.errorMsg };
    },
  };
}

/** provider/dragonfly.go of Harbor v2.12+: the Dragonfly 2 manager's open API. */
function v2Driver(endpoint: string, cred: Record<string, string> = {}): Driver {
  const base = endpoint.replace(/\/$/, '');
  const decode = (text: string): { id: number; state: string; errors: string[]; success: string[] } => {
    const doc: unknown = JSON.parse(text);
    const id = goInt(doc, 'id');
    goTime(doc, 'created_at');
    goTime(doc, 'updated_at');
    const result = goField(doc, 'result') ?? {};
    const states = (goField(result, 'job_states') ?? []) as unknown[];
    const errors = states.map((s) => goString(s, 'error'));
    const success = states.flatMap((s) => ((goField(s, 'results') ?? []) as unknown[]))
      .flatMap((r) => ((goField(r, 'success_tasks') ?? []) as unknown[]).map((t) => goString(t, 'url')));
    return { id, state: goString(doc, 'state'), errors, success };
  };
  return {
    async health() {
      await harborCall(`${base}/healthy`, cred);
    },
    async preheat(img) {
      const body = {
        type: 'preheat',
        args: { type: img.type, url: img.url, tag: '', filtered_query_params: '', headers: img.headers, scope: 'single_peer', concurrent_count: 0, timeout: 0 },
        scheduler_cluster_ids: null,
      };
      const res = await harborCall(`${base}/oapi/v1/jobs`, cred, body);
      if (res.status === 208) throw new Error('status already reported');
      return { taskId: String(decode(res.text).id), status: 'PENDING', error: '' };
    },
    async check(taskId) {
      const d = decode((await harborCall(`${base}/oapi/v1/jobs/${taskId}`, cred)).text);
      const status = d.state === 'PENDING' ? 'RUNNING' : d.state === 'SUCCESS' ? 'SUCCESS' : 'FAIL';
      const error = d.state === 'FAILURE' ? d.errors.join('; ') : d.state === 'SUCCESS' ? '' : d.state === 'PENDING' ? '' : `unknown state: ${d.state}`;
      return { taskId: String(d.id), status, error: d.state === 'SUCCESS' ? `${d.success.length} blobs` : error };
    },
  };
}

/** job.go: health, create, then poll (Harbor: every 10 s up to 1801 s; here faster) until SUCCESS or FAIL. */
async function harborJob(driver: Driver, img: PreheatImage, maxMs = 60_000): Promise<HarborStatus & { polls: number }> {
  await driver.health();
  let s = await driver.preheat(img);
  let polls = 0;
  const deadline = Date.now() + maxMs;
  while (s.status !== 'SUCCESS' && s.status !== 'FAIL') {
    if (Date.now() > deadline) return { ...s, status: `STILL_POLLING(${s.status})`, polls };
    await sleep(100);
    s = await driver.check(s.taskId);
    polls++;
  }
  return { ...s, polls };
}

// ---------------------------------------------------------------- the test bed

describe('Harbor preheat contract against docker-registry with token auth', { skip: e2eSkip(), timeout: 300_000 }, () => {
  const cleanups = new Cleanups();
  let t: TmpDir;
  let issuer: TokenIssuer;
  let reg: Registry;
  let sn: Supernode;
  let snAlt: Supernode;
  const peers: Array<{ d: Dfdaemon; ip: string }> = [];
  const HARBOR = { Authorization: 'Bearer harbor-provider-secret' };
  const images = new Map<string, BuiltImage>();

  const pullToken = (repo: string, ttlSeconds?: number): string =>
    issuer.mint([{ type: 'repository', name: repo, actions: ['pull'] }], { subject: 'distributor', ttlSeconds });
  const manifestUrl = (repo: string, tag: string): string => `${reg.url}/v2/${repo}/manifests/${tag}`;
  const blobsOf = (img: BuiltImage) => [...img.layers, img.config].map((b) => ({ digest: b.digest, size: b.size }));
  /** What Harbor's enforcer sends for one (artifact, tag): one manifest URL and a freshly minted pull token. */
  const harborImage = (repo: string, tag: string, ttlSeconds?: number): PreheatImage => ({
    type: 'image',
    url: manifestUrl(repo, tag),
    headers: { Authorization: `Bearer ${pullToken(repo, ttlSeconds)}` },
    image: repo,
    tag,
    digest: images.get(`${repo}:${tag}`)?.manifest.digest ?? '',
  });
  const api = (s: Supernode) => `http://${(s.api.server.address() as { address: string }).address}:${s.apiPort}`;

  async function push(repo: string, tag: string, build: () => Promise<BuiltImage>): Promise<BuiltImage> {
    const img = await build();
    cleanups.push(() => img.cleanup());
    const auth = issuer.mint([{ type: 'repository', name: repo, actions: ['pull', 'push'] }]);
    await pushImage(reg.url, repo, tag, img, { headers: { Authorization: `Bearer ${auth}` } });
    images.set(`${repo}:${tag}`, img);
    return img;
  }

  before(async () => {
    t = await tmpDir('harbor');
    cleanups.push(() => t.cleanup());
    const regIp = await loopbackIp();
    // skopeo (Go) never proxies loopback IPs, so the registry needs a name.
    cleanups.push(await addHosts([{ ip: regIp, name: 'harbor-preheat.test' }]));
    issuer = await startTokenIssuer({ host: await loopbackIp(), service: 'harbor-registry', issuer: 'harbor-token-issuer', users: { robot: 'robot-pw' } });
    cleanups.push(() => issuer.stop());
    reg = await startRegistry({ host: regIp, hostname: 'harbor-preheat.test', auth: issuer.registryAuth });
    cleanups.push(() => reg.stop());
    await push('library/app', 'v1', () => buildImage({ layers: [3 * MiB, 1 * MiB, 200 * KiB], seed: 'harbor-v1' }));
    await push('library/app', 'v2', () => buildOciImage({ layers: [2 * MiB, 300 * KiB], seed: 'harbor-v2' }));
    await push('library/app', 'v3', () => buildImage({ layers: [1 * MiB], seed: 'harbor-v3' }));

    const snIp = await loopbackIp();
    sn = await supernodeAt(t.path, snIp, 'preheat:\n  auth: { mode: bearer, token: harbor-provider-secret }\n');
    cleanups.push(() => sn.close());
    snAlt = await supernodeAt(t.path, await loopbackIp(),
      'preheat:\n  auth: { mode: bearer, token: harbor-provider-secret }\n  failedStatus: FAIL\n'
      + '  webhooks:\n    token: hook\n    registryAuth: { username: robot, password: robot-pw }\n');
    cleanups.push(() => snAlt.close());
    for (let i = 0; i < 3; i++) {
      const ip = await loopbackIp();
      const d = await dfdaemonAt(t.path, ip, [`${snIp}:${sn.apiPort}`]);
      cleanups.push(() => d.close());
      peers.push({ d, ip });
    }
  });

  after(() => cleanups.run());

  it('v2.1-v2.11: POST /preheats gives a string ID, polling ends SUCCESS; then three peers pull with 0 blob bytes from the registry', async () => {
    const img = images.get('library/app:v1')!;
    reg.resetCounts();
    const job = await harborJob(v1Driver(api(sn), 11, HARBOR), harborImage('library/app', 'v1'));
    assert.equal(job.status, 'SUCCESS', job.error);
    assert.match(job.taskId, /^\d+$/);
    // The CDN fetched every blob (config and layers) exactly once, with the token Harbor sent.
    for (const b of blobsOf(img)) {
      const gets = reg.blobGets().filter((g) => g.digest === b.digest);
      assert.deepEqual(gets.map((g) => [g.status, g.bytes]), [[200, b.size]], `origin GETs of ${b.digest}`);
    }
    const fromOrigin = metric(await sn.metrics.registry.metrics(), 'supernode_source_bytes_total');
    reg.resetCounts();

    const copy = await skopeoCopy(`${reg.hostPort}/library/app:v1`, `${t.path}/copy-v1`, {
      env: { HTTP_PROXY: `http://${peers[0].ip}:${peers[0].d.port}`, HTTPS_PROXY: '', NO_PROXY: '' },
      srcTlsVerify: false,
      creds: 'robot:robot-pw',
    });
    assert.equal(copy.manifestDigest, img.manifest.digest);
    assert.ok((await verifyCopiedDir(copy.dir)).ok, 'skopeo copy verifies');
    for (const p of peers.slice(1)) {
      for (const b of blobsOf(img)) {
        const r = await getViaProxy(p.ip, p.d.port, `${reg.url}/v2/library/app/blobs/${b.digest}`, { Authorization: `Bearer ${pullToken('library/app')}` });
        assert.equal(r.status, 200);
        assert.equal(`sha256:${r.sha256}`, b.digest);
      }
    }
    await sleep(300);
    assert.equal(reg.blobBytesServed(), 0, 'the registry served no blob bytes to the peers');
    assert.deepEqual(reg.blobGets(), [], 'no blob GET reached the registry');
    assert.equal(metric(await sn.metrics.registry.metrics(), 'supernode_source_bytes_total'), fromOrigin, 'the CDN fetched nothing more');
    for (const p of peers.slice(1)) {
      assert.equal(metric(await p.d.metrics.registry.metrics(), 'dfdaemon_blobs_total', { via: 'p2p' }), blobsOf(img).length);
    }
  });

  it('a finished duplicate answers 208: v2.3+ take it as SUCCESS without polling, v2.1 polls its way to SUCCESS', async () => {
    const modern = await harborJob(v1Driver(api(sn), 3, HARBOR), harborImage('library/app', 'v1'));
    assert.deepEqual([modern.status, modern.polls], ['SUCCESS', 0]);
    const old = await harborJob(v1Driver(api(sn), 1, HARBOR), harborImage('library/app', 'v1'));
    assert.equal(old.status, 'SUCCESS');
    assert.ok(old.polls >= 1);
    assert.equal(old.taskId, modern.taskId, 'both name the finished job');
  });

  it('v2.12+: POST /oapi/v1/jobs gives a numeric id and RFC3339 times; PENDING until SUCCESS, with one success task per blob', async () => {
    const img = images.get('library/app:v2')!;
    reg.resetCounts();
    const job = await harborJob(v2Driver(api(sn), HARBOR), harborImage('library/app', 'v2'));
    assert.equal(job.status, 'SUCCESS', job.error);
    assert.equal(job.error, `${blobsOf(img).length} blobs`);
    assert.equal(reg.blobBytesServed(), blobsOf(img).reduce((s, b) => s + b.size, 0), 'each blob once (OCI manifest fetched with OCI Accept types)');
    const raw = await (await fetch(`${api(sn)}/oapi/v1/jobs/${job.taskId}`, { headers: HARBOR })).json() as Record<string, unknown>;
    assert.equal(typeof raw.id, 'number');
    assert.equal(raw.state, 'SUCCESS');
  });

  it('an expired Harbor token fails the job with the registry\'s 401, on both APIs, and never hangs', async () => {
    const expired = harborImage('library/app', 'v3', -600);
    const v1 = await harborJob(v1Driver(api(sn), 8, HARBOR), expired, 20_000);
    assert.equal(v1.status, 'FAIL');
    assert.match(v1.error, /401 Unauthorized.*refused the Authorization sent with the request \(invalid_token\).*expired/);
    const v2 = await harborJob(v2Driver(api(sn), HARBOR), harborImage('library/app', 'v3', -600), 20_000);
    assert.equal(v2.status, 'FAIL');
    assert.match(v2.error, /401 Unauthorized/);
  });

  it('with preheat.webhooks.registryAuth, a refused Harbor token is replaced through the token service', async () => {
    const job = await harborJob(v1Driver(api(snAlt), 11, HARBOR), harborImage('library/app', 'v3', -600));
    assert.equal(job.status, 'SUCCESS', job.error);
    assert.ok(issuer.requests.some((r) => r.user === 'robot' && r.authenticated === true && r.scopes.includes('repository:library/app:pull')));
    // Without provider auth anyone could aim the credentials at their own registry: not used then.
    const open = await supernodeAt(t.path, await loopbackIp(), 'preheat:\n  webhooks:\n    token: hook\n    registryAuth: { username: robot, password: robot-pw }\n');
    cleanups.push(() => open.close());
    const refused = await harborJob(v1Driver(api(open), 11), harborImage('library/app', 'v3', -600));
    assert.equal(refused.status, 'FAIL');
  });

  it('status mappings by version: FAILED ends the job from v2.8; v2.1-v2.7 poll on unless failedStatus is FAIL', async () => {
    const missing = harborImage('library/app', 'no-such-tag');
    const v28 = await harborJob(v1Driver(api(sn), 8, HARBOR), missing);
    assert.equal(v28.status, 'FAIL');
    assert.match(v28.error, /no manifest at .*no-such-tag \(404 MANIFEST_UNKNOWN/);
    const v27 = await harborJob(v1Driver(api(sn), 7, HARBOR), missing, 1_500);
    assert.equal(v27.status, 'STILL_POLLING(FAILED)', 'Harbor 2.7 does not know FAILED (harbor#14556)');
    const v27fail = await harborJob(v1Driver(api(snAlt), 7, HARBOR), harborImage('library/app', 'no-such-tag'));
    assert.equal(v27fail.status, 'FAIL', 'failedStatus: FAIL ends the job on every version');
  });
});
