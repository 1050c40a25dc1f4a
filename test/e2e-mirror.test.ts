// Registry-mirror mode with real clients: dockerd's `registry-mirrors` (docker.io pulls only, so
// the mirror's remote stands in for Docker Hub) and containerd's hosts.toml mirror. The remote
// is an HTTPS registry whose CA dfdaemon knows only from `registry_mirror.certs`.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startContainerd } from './fixtures/containerd.js';
import { startDockerd } from './fixtures/dockerd.js';
import { addHosts } from './fixtures/hosts.js';
import { buildImage, pushImage, type BuiltImage } from './fixtures/image.js';
import { tmpDir, type TmpDir } from './fixtures/proc.js';
import { startRegistry, type Registry } from './fixtures/registry.js';
import { createCa, issueCert, type TestCa } from './fixtures/tls.js';
import { metric } from './helpers/cluster.js';
import { Cleanups, e2eSkip, expectBlobGets, loopbackIp, scrape, startBinOnFreePort, type Daemon } from './helpers/e2e.js';

const MiB = 1024 * 1024;

describe('end to end: dfdaemon as a registry mirror for dockerd and containerd', { skip: e2eSkip(), timeout: 600_000 }, () => {
  const cleanups = new Cleanups();
  const tag = randomBytes(3).toString('hex');
  const regName = `mirror-${tag}.test`;
  let t: TmpDir;
  let ca: TestCa;
  let reg: Registry;
  let df: Daemon;

  const blobsOf = (img: BuiltImage) => [...img.layers.map((l) => ({ digest: l.digest, size: l.size })), { digest: img.config.digest, size: img.config.size }];

  async function push(repo: string, name: string, layers: number[]): Promise<BuiltImage> {
    const img = await buildImage({ layers, seed: `${tag}-${name}` });
    cleanups.push(() => img.cleanup());
    await pushImage(reg.url, repo, name, img, { ca: ca.certPem });
    return img;
  }

  before(async () => {
    t = await tmpDir('e2e-mirror');
    cleanups.push(() => t.cleanup());
    ca = await createCa({ commonName: 'mirror remote CA' });
    cleanups.push(() => ca.cleanup());
    const regIp = await loopbackIp();
    const leaf = await issueCert(ca, { dnsNames: [regName], name: 'registry' });
    reg = await startRegistry({ host: regIp, hostname: regName, tls: { cert: leaf.certFile, key: leaf.keyFile } });
    cleanups.push(() => reg.stop());
    cleanups.push(await addHosts([{ ip: regIp, name: regName }]));

    const snIp = await loopbackIp();
    await writeFile(join(t.path, 'supernode.yml'), `base:\n  homeDir: ${join(t.path, 'sn-home')}\n`);
    const sn = await startBinOnFreePort('supernode', snIp, (port) => ['--config', join(t.path, 'supernode.yml'), '--port', String(port), '--download-port=0', '--listen-ip', snIp]);
    cleanups.push(() => sn.stop());

    const dfIp = await loopbackIp();
    await writeFile(join(t.path, 'ca.crt'), ca.certPem);
    const cfg = join(t.path, 'dfdaemon.yml');
    await writeFile(
      cfg,
      [
        'registry_mirror:',
        `  remote: https://${reg.hostPort}`,
        '  certs: ["ca.crt"]',
        `dfget_flags: ["--node", "${snIp}:${sn.port}", "-f", "Expires&Signature"]`,
        'proxies:',
        '  - regx: blobs/sha256.*',
        'ratelimit: 200M',
        '',
      ].join('\n'),
    );
    df = await startBinOnFreePort('dfdaemon', dfIp, (port) => ['--config', cfg, '--port', String(port), '--listen-ip', dfIp], { HOME: t.path });
    cleanups.push(() => df.stop());
  });

  after(() => cleanups.run());

  it('dockerd registry-mirrors: a docker.io pull is answered by the mirror remote, blobs through P2P', async () => {
    // Docker Hub's official images live under library/; a name of our own cannot come from Hub.
    const name = `dfts-${tag}`;
    const img = await push(`library/${name}`, 'latest', [4 * MiB, 1 * MiB]);
    const docker = await startDockerd({ registryMirrors: [df.url] });
    cleanups.push(() => docker.stop());
    await docker.pull(`docker.io/library/${name}:latest`);
    assert.equal(await docker.imageId(`${name}:latest`), img.config.digest);
    const text = await scrape(df.url);
    assert.ok(metric(text, 'dfdaemon_requests_total', { route: 'mirror' }) >= 1, 'manifests passed through to the remote');
    assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'p2p' }), 3);
    assert.equal(metric(text, 'dfdaemon_source_bytes_total'), 0);
    await expectBlobGets(reg, blobsOf(img), 1);
    await docker.stop();
  });

  it('containerd hosts.toml: the registry host is mirrored by dfdaemon, blobs through P2P', async () => {
    const img = await push('team/ctr', 'v1', [3 * MiB, 2 * MiB]);
    const before = metric(await scrape(df.url), 'dfdaemon_blobs_total', { via: 'p2p' });
    const hostsDir = join(t.path, 'certs.d');
    await mkdir(join(hostsDir, reg.hostPort), { recursive: true });
    await writeFile(
      join(hostsDir, reg.hostPort, 'hosts.toml'),
      [`server = "https://${reg.hostPort}"`, '', `[host."${df.url}"]`, '  capabilities = ["pull", "resolve"]', ''].join('\n'),
    );
    const ctrd = await startContainerd();
    cleanups.push(() => ctrd.stop());
    await ctrd.ctrPull(`${reg.hostPort}/team/ctr:v1`, { hostsDir });
    const content = await ctrd.contentDigests();
    for (const b of blobsOf(img)) assert.ok(content.includes(b.digest), `containerd has ${b.digest}`);
    const [image] = await ctrd.images();
    assert.equal(image.digest, img.manifest.digest);
    const text = await scrape(df.url);
    assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'p2p' }) - before, 3);
    await expectBlobGets(reg, blobsOf(img), 1);
    await ctrd.stop();
  });
});
