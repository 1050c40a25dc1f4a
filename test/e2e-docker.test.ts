// End to end with real components: Debian's docker-registry as the origin, our supernode and
// dfdaemons started from ./bin with the user guide's own config files, and dockerd, skopeo and
// ctr as clients going through dfdaemon as their HTTP proxy.
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startContainerd, type Containerd } from './fixtures/containerd.js';
import { startDockerd, type Dockerd } from './fixtures/dockerd.js';
import { addHosts } from './fixtures/hosts.js';
import { buildImage, pushImage, type BuiltImage } from './fixtures/image.js';
import { tmpDir, type TmpDir } from './fixtures/proc.js';
import { startRegistry, type Registry } from './fixtures/registry.js';
import { skopeoCopy, verifyCopiedDir } from './fixtures/skopeo.js';
import { metric } from './helpers/cluster.js';
import { Cleanups, e2eSkip, expectBlobGets, loopbackIp, scrape, seedFile, startBin, startBinOnFreePort, type Daemon } from './helpers/e2e.js';

const MiB = 1024 * 1024;

describe('end to end: real registry, supernode, dfdaemons and clients', { skip: e2eSkip(), timeout: 600_000 }, () => {
  const cleanups = new Cleanups();
  let t: TmpDir;
  let reg: Registry;
  let regHost: string;
  let sn: Daemon;
  const peers: Daemon[] = [];
  const blobsOf = (img: BuiltImage) => [...img.layers.map((l) => ({ digest: l.digest, size: l.size })), { digest: img.config.digest, size: img.config.size }];

  async function push(tag: string, layers: number[]): Promise<BuiltImage> {
    const img = await buildImage({ layers, seed: tag });
    cleanups.push(() => img.cleanup());
    await pushImage(reg.url, 'library/app', tag, img);
    return img;
  }

  async function startPeer(i: number): Promise<Daemon> {
    const ip = await loopbackIp();
    const home = join(t.path, `peer${i}`);
    await mkdir(home, { recursive: true });
    // The guide's HTTP-Harbor dfdaemon.yml, only host names substituted; HOME keeps each
    // peer's data apart, as each host's own home directory would.
    const cfg = await seedFile('dfdaemon-http.yml', home, { '<mysupernodehost>': 'supernode.test', '<myharbor_host>': 'harbor.test' });
    const d = await startBinOnFreePort('dfdaemon', ip, (port) => ['--config', cfg, '--port', String(port), '--listen-ip', ip], { HOME: home });
    cleanups.push(() => d.stop());
    return d;
  }

  const proxyEnv = (d: Daemon) => ({ HTTP_PROXY: d.url, HTTPS_PROXY: d.url, NO_PROXY: '' });

  before(async () => {
    t = await tmpDir('e2e');
    cleanups.push(() => t.cleanup());
    const regIp = await loopbackIp();
    reg = await startRegistry({ host: regIp });
    cleanups.push(() => reg.stop());
    regHost = `harbor.test:${reg.port}`;
    const snIp = await loopbackIp();
    cleanups.push(await addHosts([{ ip: regIp, name: 'harbor.test' }, { ip: snIp, name: 'supernode.test' }]));
    // The guide's supernode.yml, only homeDir substituted. It listens on 8002, which the
    // guide's dfget_flags imply, on an address of its own.
    const snCfg = await seedFile('supernode.yml', t.path, { '/home/admin/supernode': join(t.path, 'supernode-home') });
    sn = await startBin('supernode', ['--config', snCfg, '--download-port=0', '--listen-ip', snIp], snIp, 8002);
    cleanups.push(() => sn.stop());
    for (let i = 0; i < 3; i++) peers.push(await startPeer(i));
  });

  after(() => cleanups.run());

  it('docker pull through dfdaemon: same image ID as the config digest, blobs via P2P, origin once', async () => {
    const img = await push('docker', [6 * MiB, 3 * MiB, 700 * 1024]);
    const docker: Dockerd = await startDockerd({ env: proxyEnv(peers[0]), insecureRegistries: [regHost] });
    cleanups.push(() => docker.stop());
    const ref = `${regHost}/library/app:docker`;
    await docker.pull(ref);
    assert.equal(await docker.imageId(ref), img.config.digest, 'image ID equals the one a direct pull gives (the config digest)');
    const text = await scrape(peers[0].url);
    assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'p2p' }), 4, 'three layers and the config came through P2P');
    assert.ok(metric(text, 'dfdaemon_piece_bytes_total', { source: 'supernode' }) >= 9 * MiB);
    assert.equal(metric(text, 'dfdaemon_source_bytes_total'), 0, 'nothing went around the supernode');
    await expectBlobGets(reg, blobsOf(img), 1);
  });

  it('three dfdaemons pull one image; the registry serves each blob once; later peers use peers', async () => {
    const img = await push('swarm', [9 * MiB, 5 * MiB, 300 * 1024]);
    const ref = `${regHost}/library/app:swarm`;
    const dest = (i: number) => join(t.path, `copy${i}`);
    await skopeoCopy(ref, dest(0), { env: proxyEnv(peers[0]), srcTlsVerify: false });
    const ctrd: Containerd = await startContainerd();
    cleanups.push(() => ctrd.stop());
    await Promise.all([
      skopeoCopy(ref, dest(1), { env: proxyEnv(peers[1]), srcTlsVerify: false }),
      ctrd.ctrPull(ref, { env: proxyEnv(peers[2]), plainHttp: true }),
    ]);
    for (const i of [0, 1]) assert.ok((await verifyCopiedDir(dest(i))).ok, `copy ${i} verifies`);
    const content = await ctrd.contentDigests();
    for (const b of blobsOf(img)) assert.ok(content.includes(b.digest), `containerd has ${b.digest}`);
    await expectBlobGets(reg, blobsOf(img), 1);
    for (const p of peers.slice(1)) {
      const text = await scrape(p.url);
      assert.ok(metric(text, 'dfdaemon_piece_bytes_total', { source: 'peer' }) > 0, `${p.url} took pieces from peers`);
    }
    assert.ok(metric(await scrape(peers[0].url), 'dfdaemon_upload_bytes_total') > 0, 'the first peer uploaded');
  });

  it('with the supernode stopped, a docker pull still succeeds by going back to the source', async () => {
    const img = await push('nosn', [2 * MiB, 1 * MiB]);
    await sn.stop();
    const docker: Dockerd = await startDockerd({ env: proxyEnv(peers[1]), insecureRegistries: [regHost] });
    cleanups.push(() => docker.stop());
    const ref = `${regHost}/library/app:nosn`;
    await docker.pull(ref);
    assert.equal(await docker.imageId(ref), img.config.digest);
    const text = await scrape(peers[1].url);
    assert.ok(metric(text, 'dfdaemon_blobs_total', { via: 'source' }) >= 3, 'blobs came from the origin directly');
    assert.ok(metric(text, 'dfdaemon_source_bytes_total') >= 3 * MiB);
  });
});
