// Prefetch hints: a dfdaemon that proxies an image manifest names its blobs to the supernode,
// whose CDN fetches them one at a time and only while no other source fetch runs.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import { request } from 'undici';
import type { Dfdaemon } from '../dfdaemon/daemon.js';
import { waitFor } from './fixtures/proc.js';
import { dfdaemonAt, metric } from './helpers/cluster.js';
import { randomBlob } from './helpers/origin.js';
import { getViaProxy } from './helpers/proxy-get.js';
import { registerPeer, useOrigin } from './helpers/sn-fixture.js';

const MiB = 1024 * 1024;
const V2 = 'application/vnd.docker.distribution.manifest.v2+json';

async function hint(api: string, body: unknown): Promise<{ status: number; json: { code?: number; data?: { queued: number } } }> {
  const res = await request(`${api}/peer/prefetch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.statusCode, json: (await res.body.json()) as { code?: number; data?: { queued: number } } };
}

describe('supernode /peer/prefetch', () => {
  const ctx = useOrigin('prefetch', '');

  it('fetches hinted blobs after the running fetch, one at a time, and peers then get them with no origin request', async () => {
    const { origin, api, sn } = ctx;
    const a = origin.add(randomBlob(4 * MiB));
    const hinted = [origin.add(randomBlob(1 * MiB)), origin.add(randomBlob(1 * MiB)), origin.add(randomBlob(1 * MiB))];
    origin.rate = 4 * MiB;
    const reg = await registerPeer(api, { rawUrl: origin.blobUrl(a), cid: 'pf-a', ip: '127.0.0.30', port: 0, dfdaemon: true });
    assert.equal(reg.code, 200);
    const h = await hint(api, { tasks: hinted.map((d) => ({ rawUrl: origin.blobUrl(d), headers: ['X-Test:1'] })) });
    assert.equal(h.status, 200);
    assert.equal(h.json.data?.queued, 3);
    await sleep(500);
    assert.deepEqual(hinted.map((d) => origin.requests.get(d) ?? 0), [0, 0, 0], 'nothing beside a running fetch');
    await waitFor(() => sn.cdn.get(reg.taskId)?.status === 'SUCCESS', { timeoutMs: 10_000 });
    origin.rate = 0;
    await waitFor(() => origin.inFlight === 0, { message: 'the demand response closed' });
    origin.peak = 0;
    await waitFor(() => hinted.every((d) => origin.requests.get(d) === 1), { timeoutMs: 10_000, message: 'every hinted blob fetched' });
    await waitFor(() => [...sn.cdn.all()].filter((t) => t.status === 'SUCCESS').length === 4, { timeoutMs: 5_000 });
    assert.equal(origin.peak, 1, 'one prefetch at a time');
    assert.deepEqual(origin.log.filter((l) => hinted.includes(l.digest)).map((l) => l.digest), hinted, 'in the order hinted');
    const again = await hint(api, { tasks: hinted.map((d) => ({ rawUrl: origin.blobUrl(d) })) });
    assert.equal(again.json.data?.queued, 0, 'what the CDN has is not queued again');
    const r = await registerPeer(api, { rawUrl: origin.blobUrl(hinted[0]), cid: 'pf-b', ip: '127.0.0.31', port: 0, dfdaemon: true });
    assert.equal(r.code, 200);
    assert.equal(origin.requests.get(hinted[0]), 1, 'the registration found it at the CDN');
    const text = await (await request(`${api}/metrics`)).body.text();
    assert.equal(metric(text, 'supernode_prefetched_blobs_total'), 3);
  });

  it('rejects malformed hints with a 400 and keeps serving', async () => {
    const { api, origin } = ctx;
    for (const body of [{}, { tasks: 'x' }, { tasks: [{ rawUrl: 'ftp://x/y' }] }, { tasks: [{}] }, { tasks: Array.from({ length: 65 }, () => ({ rawUrl: origin.blobUrl('0'.repeat(64)) })) }, []]) {
      const h = await hint(api, body);
      assert.equal(h.status, 400, JSON.stringify(body).slice(0, 80));
    }
    assert.equal((await request(`${api}/_ping`)).statusCode, 200);
  });
});

describe('prefetch: false on the supernode', () => {
  const ctx = useOrigin('prefetch-off', '  prefetch: false\n');
  it('accepts hints and fetches nothing', async () => {
    const d = ctx.origin.add(randomBlob(MiB));
    const h = await hint(ctx.api, { tasks: [{ rawUrl: ctx.origin.blobUrl(d) }] });
    assert.equal(h.json.data?.queued, 0);
    await sleep(600);
    assert.equal(ctx.origin.requests.get(d) ?? 0, 0);
  });
});

describe('dfdaemon hints the blobs of a manifest it proxies', () => {
  const ctx = useOrigin('prefetch-df', '');
  const daemons: Dfdaemon[] = [];
  after(async () => {
    for (const d of daemons) await d.close();
  });

  it('the supernode fetches every listed blob; the host downloads none of them', async () => {
    const { origin, sn } = ctx;
    const config = origin.add(Buffer.from('{"architecture":"amd64"}'));
    const layers = [origin.add(randomBlob(2 * MiB)), origin.add(randomBlob(MiB))];
    const manifest = {
      schemaVersion: 2,
      mediaType: V2,
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: 24, digest: `sha256:${config}` },
      layers: layers.map((d) => ({ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: 1, digest: `sha256:${d}` })),
    };
    origin.manifests.set('library/test/manifests/v1', [V2, JSON.stringify(manifest)]);
    origin.manifests.set('library/test/manifests/multi', ['application/vnd.docker.distribution.manifest.list.v2+json', JSON.stringify({ manifests: [{ digest: `sha256:${layers[0]}` }] })]);
    const df = await dfdaemonAt(ctx.dir, '127.0.0.73', [`127.0.0.1:${sn.apiPort}`]);
    daemons.push(df);
    const list = await getViaProxy('127.0.0.73', df.port, `${origin.url}/v2/library/test/manifests/multi`);
    assert.equal(list.status, 200);
    await sleep(600);
    assert.equal(origin.requests.get(layers[0]) ?? 0, 0, 'a manifest list names platforms, not blobs: no hint');
    const m = await getViaProxy('127.0.0.73', df.port, `${origin.url}/v2/library/test/manifests/v1`);
    assert.equal(m.status, 200);
    await waitFor(() => [config, ...layers].every((d) => origin.requests.get(d) === 1), { timeoutMs: 10_000, message: 'the CDN fetched every listed blob' });
    assert.deepEqual([...df.store.all()], [], 'nothing was downloaded to the host');
    const got = await getViaProxy('127.0.0.73', df.port, origin.blobUrl(layers[0]));
    assert.equal(got.sha256, layers[0]);
    assert.equal(origin.requests.get(layers[0]), 1, 'the pull that followed came from the CDN');
  });
});
