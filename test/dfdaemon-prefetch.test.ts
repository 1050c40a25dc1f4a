// `prefetch: true`: an image manifest passing through dfdaemon starts the P2P download of every
// blob it lists, so a client that fetches blobs one at a time finds the later ones local.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { Dfdaemon } from '../dfdaemon/daemon.js';
import type { Supernode } from '../supernode/server.js';
import { waitFor } from './fixtures/proc.js';
import { dfdaemonAt, metric, supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { getViaProxy } from './helpers/proxy-get.js';

const MiB = 1024 * 1024;
const V2 = 'application/vnd.docker.distribution.manifest.v2+json';

describe('dfdaemon prefetch of the blobs a manifest lists', () => {
  let dir: string;
  let origin: Origin;
  let sn: Supernode;
  const daemons: Dfdaemon[] = [];
  const layers: string[] = [];
  let config = '';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-prefetch-'));
    origin = await startOrigin('127.0.0.1');
    sn = await supernodeAt(dir, '127.0.0.1');
    config = origin.add(Buffer.from('{"architecture":"amd64"}'));
    for (const size of [3 * MiB, 1 * MiB]) layers.push(origin.add(randomBlob(size)));
    const manifest = {
      schemaVersion: 2,
      mediaType: V2,
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: 24, digest: `sha256:${config}` },
      layers: layers.map((d) => ({ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: 1, digest: `sha256:${d}` })),
    };
    origin.manifests.set('library/test/manifests/v1', [V2, JSON.stringify(manifest)]);
    // A manifest list names platforms, not blobs this host will pull: never prefetched.
    origin.manifests.set('library/test/manifests/multi', ['application/vnd.docker.distribution.manifest.list.v2+json', JSON.stringify({ manifests: [{ digest: `sha256:${layers[0]}` }] })]);
  });

  after(async () => {
    for (const d of daemons) await d.close();
    await sn?.close();
    await origin?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('off by default: a manifest GET moves no blob', async () => {
    const df = await dfdaemonAt(dir, '127.0.0.71', [`127.0.0.1:${sn.apiPort}`]);
    daemons.push(df);
    const m = await getViaProxy('127.0.0.71', df.port, `${origin.url}/v2/library/test/manifests/v1`);
    assert.equal(m.status, 200);
    await sleep(500);
    assert.equal([...origin.requests.values()].reduce((a, b) => a + b, 0), 0);
  });

  it('on: every listed blob is downloaded and later served from the local cache', async () => {
    const df = await dfdaemonAt(dir, '127.0.0.72', [`127.0.0.1:${sn.apiPort}`], 'prefetch: true\n');
    daemons.push(df);
    const list = await getViaProxy('127.0.0.72', df.port, `${origin.url}/v2/library/test/manifests/multi`);
    assert.equal(list.status, 200);
    await sleep(300);
    assert.equal(origin.requests.get(layers[0]) ?? 0, 0, 'a manifest list starts nothing');
    const m = await getViaProxy('127.0.0.72', df.port, `${origin.url}/v2/library/test/manifests/v1`);
    assert.equal(m.status, 200);
    const all = [config, ...layers];
    await waitFor(() => [...df.store.all()].filter((f) => f.complete).length === all.length, { timeoutMs: 10_000, message: 'every listed blob complete in the local cache' });
    for (const d of all) assert.equal(origin.requests.get(d), 1, 'the CDN fetched each blob once');
    for (const d of all) assert.equal((await getViaProxy('127.0.0.72', df.port, origin.blobUrl(d))).sha256, d);
    const text = await (await fetch(`http://127.0.0.72:${df.port}/metrics`)).text();
    assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'local' }), all.length, 'the client\'s blob GETs were served locally');
  });
});
