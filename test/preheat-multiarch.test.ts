// Multi-arch images against a real docker-registry: an OCI index and a Docker manifest list of
// linux/amd64, linux/arm64 and linux/arm/v7 are preheated for every platform, or only for those
// configured (preheat.platforms) or asked for (v2 args.platform), each blob fetched once.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { taskId } from '../shared/protocol/taskid.js';
import type { Supernode } from '../supernode/server.js';
import { buildImage, buildOciImage, pushIndex, type BuiltImage, type IndexPushResult, type Platform } from './fixtures/image.js';
import { sleep, tmpDir, waitFor, type TmpDir } from './fixtures/proc.js';
import { startRegistry, type Registry } from './fixtures/registry.js';
import { dfdaemonAt, supernodeAt } from './helpers/cluster.js';
import { Cleanups, loopbackIp } from './helpers/e2e.js';
import { getViaProxy } from './helpers/proxy-get.js';

const KiB = 1024;
const PLATFORMS: Platform[] = [
  { os: 'linux', architecture: 'amd64' },
  { os: 'linux', architecture: 'arm64' },
  { os: 'linux', architecture: 'arm', variant: 'v7' },
];
const skip = process.env.CI !== 'true' && !existsSync('/usr/bin/docker-registry') ? 'needs /usr/bin/docker-registry' : false;

describe('preheat of multi-arch images', { skip, timeout: 120_000 }, () => {
  const cleanups = new Cleanups();
  let t: TmpDir;
  let reg: Registry;
  let sn: Supernode;
  let oci: { index: IndexPushResult; images: BuiltImage[] };
  let docker: { index: IndexPushResult; images: BuiltImage[] };

  const root = (s: Supernode) => `http://${(s.api.server.address() as AddressInfo).address}:${s.apiPort}`;
  const blobUrl = (repo: string, digest: string) => `${reg.url}/v2/${repo}/blobs/${digest}`;
  const blobsOf = (img: BuiltImage) => [...img.layers, img.config].map((b) => ({ digest: b.digest, size: b.size }));
  const cached = (s: Supernode, repo: string, img: BuiltImage) => blobsOf(img).map((b) => s.cdn.get(taskId(blobUrl(repo, b.digest)))?.status ?? 'none');

  async function pushMulti(repo: string, build: typeof buildImage): Promise<{ index: IndexPushResult; images: BuiltImage[] }> {
    const images: BuiltImage[] = [];
    for (const p of PLATFORMS) {
      const img = await build({ layers: [300 * KiB, 40 * KiB], seed: `${repo}-${p.architecture}${p.variant ?? ''}`, platform: p });
      cleanups.push(() => img.cleanup());
      images.push(img);
    }
    const index = await pushIndex(reg.url, repo, 'v1', PLATFORMS.map((platform, i) => ({ platform, image: images[i] })));
    return { index, images };
  }

  async function run(s: Supernode, path: string, body: unknown): Promise<Record<string, unknown>> {
    const res = await fetch(`${root(s)}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const created = (await res.json()) as Record<string, unknown>;
    assert.ok(res.ok, JSON.stringify(created));
    const id = String(created.ID ?? created.id);
    return waitFor(async () => {
      const v = (await (await fetch(`${root(s)}/oapi/v1/jobs/${id}`)).json()) as Record<string, unknown>;
      return v.state === 'PENDING' ? undefined : v;
    }, { timeoutMs: 30_000, message: `job ${id}` });
  }

  const successTasks = (v: Record<string, unknown>): string[] =>
    ((v.result as { job_states: Array<{ results: Array<{ success_tasks: Array<{ url: string }> }> }> }).job_states[0].results[0].success_tasks).map((s) => s.url);

  before(async () => {
    t = await tmpDir('preheat-multiarch');
    cleanups.push(() => t.cleanup());
    reg = await startRegistry({ host: await loopbackIp() });
    cleanups.push(() => reg.stop());
    oci = await pushMulti('library/multi-oci', buildOciImage);
    docker = await pushMulti('library/multi-docker', buildImage);
    sn = await supernodeAt(t.path, await loopbackIp());
    cleanups.push(() => sn.close());
  });

  after(() => cleanups.run());

  for (const [kind, repo, pick] of [['an OCI index', 'library/multi-oci', () => oci], ['a Docker manifest list', 'library/multi-docker', () => docker]] as const) {
    it(`${kind} of amd64, arm64 and arm/v7 is preheated for every platform, each blob fetched once`, async () => {
      const { index, images } = pick();
      reg.resetCounts();
      const v = await run(sn, '/preheats', { type: 'image', url: `${reg.url}/v2/${repo}/manifests/v1`, headers: {} });
      assert.equal(v.state, 'SUCCESS', JSON.stringify(v.result));
      const all = images.flatMap(blobsOf);
      assert.equal(all.length, 9, 'three configs and six layers');
      assert.deepEqual(successTasks(v).sort(), all.map((b) => blobUrl(repo, b.digest)).sort());
      for (const img of images) assert.deepEqual(cached(sn, repo, img), ['SUCCESS', 'SUCCESS', 'SUCCESS']);
      await sleep(200);
      for (const b of all) assert.equal(reg.blobGets().filter((g) => g.digest === b.digest).length, 1, `one GET of ${b.digest}`);
      const manifestGets = reg.requests().filter((r) => r.method === 'GET' && r.uri.includes('/manifests/'));
      assert.equal(manifestGets.length, 4, `the index and its three children: ${manifestGets.map((r) => r.uri).join(' ')}`);
      assert.equal(index.children.length, 3);
    });
  }

  it('preheat.platforms limits the expansion; a later pull of a preheated arm/v7 blob is a cache hit', async () => {
    const only = await supernodeAt(t.path, await loopbackIp(), 'preheat:\n  platforms: [linux/arm/v7]\n');
    cleanups.push(() => only.close());
    const v = await run(only, '/preheats', { type: 'image', url: `${reg.url}/v2/library/multi-oci/manifests/v1` });
    assert.equal(v.state, 'SUCCESS');
    const [amd, arm64, armv7] = oci.images;
    assert.deepEqual(cached(only, 'library/multi-oci', armv7), ['SUCCESS', 'SUCCESS', 'SUCCESS']);
    assert.deepEqual([...cached(only, 'library/multi-oci', amd), ...cached(only, 'library/multi-oci', arm64)], Array(6).fill('none'));

    const ip = await loopbackIp();
    const peer = await dfdaemonAt(t.path, ip, [`${(only.api.server.address() as AddressInfo).address}:${only.apiPort}`]);
    cleanups.push(() => peer.close());
    reg.resetCounts();
    const layer = armv7.layers[0];
    const r = await getViaProxy(ip, peer.port, blobUrl('library/multi-oci', layer.digest));
    assert.equal(`sha256:${r.sha256}`, layer.digest);
    await sleep(200);
    assert.equal(reg.blobBytesServed(), 0);
  });

  it('a v2 job\'s args.platform picks one platform; a platform the index lacks fails with what it has', async () => {
    const v = await run(sn, '/oapi/v1/jobs', { type: 'preheat', args: { type: 'image', url: `${reg.url}/v2/library/multi-docker/manifests/v1`, platform: 'linux/arm64', headers: {} } });
    assert.equal(v.state, 'SUCCESS');
    assert.deepEqual(successTasks(v).sort(), blobsOf(docker.images[1]).map((b) => blobUrl('library/multi-docker', b.digest)).sort());

    const none = await supernodeAt(t.path, await loopbackIp(), 'preheat:\n  platforms: [linux/s390x]\n');
    cleanups.push(() => none.close());
    const f = await run(none, '/preheats', { type: 'image', url: `${reg.url}/v2/library/multi-oci/manifests/v1` });
    assert.equal(f.state, 'FAILURE');
    const err = (f.result as { job_states: Array<{ error: string }> }).job_states[0].error;
    assert.equal(err, 'no manifest in the index is for linux/s390x (it has linux/amd64, linux/arm64, linux/arm/v7)');
  });
});
