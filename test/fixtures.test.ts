// Smoke test of the integration fixtures against the real tools:
// docker-registry, dockerd 20.10, containerd/ctr, skopeo, openssl.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startContainerd, type Containerd } from './fixtures/containerd.js';
import { startDockerd, type Dockerd } from './fixtures/dockerd.js';
import { addHosts } from './fixtures/hosts.js';
import { httpCall } from './fixtures/http.js';
import { buildImage, buildOciImage, MediaType, pushImage, pushIndex, type BuiltImage, type PushResult } from './fixtures/image.js';
import { tmpDir, type TmpDir } from './fixtures/proc.js';
import { basicAuth, startRegistry, TEST_PASSWORD, TEST_USER, writeHtpasswd, type Registry } from './fixtures/registry.js';
import { skopeoCopy, verifyCopiedDir } from './fixtures/skopeo.js';
import { makeServerTls, type ServerTls } from './fixtures/tls.js';
import { Cleanups, e2eSkip, expectBlobGets, loopbackIp } from './helpers/e2e.js';

const skip = e2eSkip();

describe('fixtures: plain-HTTP registry + docker, ctr, skopeo', { skip, timeout: 120_000 }, () => {
  const cleanups = new Cleanups();
  let reg: Registry;
  let img: BuiltImage;
  let pushed: PushResult;
  let work: TmpDir;
  let blobs: Array<{ digest: string; size: number }>;

  before(async () => {
    const ip = await loopbackIp();
    cleanups.push(await addHosts([{ ip, name: 'fixture-reg.test' }]));
    work = await tmpDir('smoke');
    cleanups.push(() => work.cleanup());
    reg = await startRegistry({ host: ip, hostname: 'fixture-reg.test' });
    cleanups.push(() => reg.stop());
    img = await buildImage({ layers: [3 << 20, 1 << 20, 100_000], seed: 'smoke' });
    cleanups.push(() => img.cleanup());
    pushed = await pushImage(reg.url, 'smoke/app', 'v1', img);
    blobs = [...img.layers, img.config];
    reg.resetCounts();
  });

  after(() => cleanups.run());

  test('registry URL uses the /etc/hosts name and serves the pushed manifest', async () => {
    assert.match(reg.url, /^http:\/\/fixture-reg\.test:\d+$/);
    assert.equal(pushed.ref, `${reg.hostPort}/smoke/app:v1`);
    const res = await httpCall(`${reg.url}/v2/smoke/app/manifests/v1`, { headers: { Accept: MediaType.dockerManifest } });
    assert.equal(res.status, 200);
    assert.equal(res.headers['docker-content-digest'], img.manifest.digest);
    assert.deepEqual(res.body, img.manifest.bytes);
    assert.equal(img.layers.length, 3);
    reg.resetCounts();
  });

  test('dockerd pull: image ID equals config digest; each blob GET once', async () => {
    const dockerd: Dockerd = await startDockerd({ insecureRegistries: [reg.hostPort] });
    cleanups.push(() => dockerd.stop());
    await dockerd.pull(pushed.ref);
    assert.equal(await dockerd.imageId(pushed.ref), img.config.digest);
    await expectBlobGets(reg, blobs, 1);
    await dockerd.rmi(pushed.ref);
    await dockerd.stop();
    reg.resetCounts();
  });

  test('ctr pull --plain-http: image digest matches; each blob GET once', async () => {
    const ctd: Containerd = await startContainerd();
    cleanups.push(() => ctd.stop());
    await ctd.ctrPull(pushed.ref, { plainHttp: true });
    const images = await ctd.images();
    assert.deepEqual(images, [{ ref: pushed.ref, mediaType: MediaType.dockerManifest, digest: img.manifest.digest }]);
    const content = await ctd.contentDigests();
    for (const b of blobs) assert.ok(content.includes(b.digest), `content store has ${b.digest}`);
    await expectBlobGets(reg, blobs, 1);
    await ctd.stop();
    reg.resetCounts();
  });

  test('skopeo copy to dir: digests verified; each blob GET once', async () => {
    const dest = join(work.path, 'skopeo-plain');
    const res = await skopeoCopy(pushed.ref, dest, { srcTlsVerify: false });
    assert.equal(res.manifestDigest, img.manifest.digest);
    const v = await verifyCopiedDir(dest);
    assert.ok(v.ok, JSON.stringify(v.blobs));
    assert.equal(v.blobs.length, 4);
    await expectBlobGets(reg, blobs, 1);
    reg.resetCounts();
  });

  test('OCI multi-arch index: ctr pulls the amd64 instance, skopeo --all copies all three', async () => {
    const platforms = [
      { architecture: 'amd64', os: 'linux' },
      { architecture: 'arm64', os: 'linux', variant: 'v8' },
      { architecture: 'arm', os: 'linux', variant: 'v7' },
    ];
    const images: BuiltImage[] = [];
    for (const p of platforms) {
      const im = await buildOciImage({ layers: [64 << 10], seed: `multi-${p.architecture}`, platform: p });
      cleanups.push(() => im.cleanup());
      images.push(im);
    }
    const idx = await pushIndex(reg.url, 'smoke/multi', 'v1', platforms.map((p, i) => ({ platform: p, image: images[i] })));
    assert.equal(idx.mediaType, MediaType.ociIndex);
    const res = await skopeoCopy(idx.ref, join(work.path, 'skopeo-multi'), { srcTlsVerify: false, all: true });
    assert.equal(res.manifestDigest, idx.digest);
    const v = await verifyCopiedDir(res.dir);
    assert.ok(v.ok, JSON.stringify(v.blobs));
    assert.equal(v.blobs.length, 3 * 3); // per instance: manifest + config + layer
    const ctd = await startContainerd();
    cleanups.push(() => ctd.stop());
    await ctd.ctrPull(idx.ref, { plainHttp: true, platform: 'linux/amd64' });
    const amd64 = images[0];
    const content = await ctd.contentDigests();
    assert.ok(content.includes(amd64.layers[0].digest));
    assert.ok(!content.includes(images[1].layers[0].digest), 'arm64 layer not fetched');
    await ctd.stop();
    reg.resetCounts();
  });
});

describe('fixtures: TLS + basic-auth registry', { skip, timeout: 120_000 }, () => {
  const cleanups = new Cleanups();
  let reg: Registry;
  let tls: ServerTls;
  let img: BuiltImage;
  let pushed: PushResult;
  let work: TmpDir;
  const auth = basicAuth(TEST_USER, TEST_PASSWORD);

  before(async () => {
    const ip = await loopbackIp();
    const name = 'fixture-tls.test';
    cleanups.push(await addHosts([{ ip, name }]));
    work = await tmpDir('smoke-tls');
    cleanups.push(() => work.cleanup());
    tls = await makeServerTls({ dnsNames: [name], ips: [ip] });
    cleanups.push(() => tls.cleanup());
    const htpasswdFile = await writeHtpasswd(work.path);
    reg = await startRegistry({
      host: ip,
      hostname: name,
      tls: { cert: tls.certFile, key: tls.keyFile },
      auth: { kind: 'basic', htpasswdFile },
    });
    cleanups.push(() => reg.stop());
    img = await buildImage({ layers: [512 << 10, 256 << 10], seed: 'smoke-tls' });
    cleanups.push(() => img.cleanup());
  });

  after(() => cleanups.run());

  test('push needs credentials and the CA', async () => {
    assert.match(reg.url, /^https:\/\/fixture-tls\.test:\d+$/);
    const anon = await httpCall(`${reg.url}/v2/`, { ca: tls.ca.certPem });
    assert.equal(anon.status, 401);
    await assert.rejects(httpCall(`${reg.url}/v2/`), /certificate/i);
    pushed = await pushImage(reg.url, 'secure/app', 'v1', img, { headers: { Authorization: auth }, ca: tls.ca.certPem });
    assert.equal(pushed.manifestDigest, img.manifest.digest);
    reg.resetCounts();
  });

  test('skopeo with --src-cert-dir and --src-creds', async () => {
    const certDir = join(work.path, 'certs');
    await mkdir(certDir);
    await copyFile(tls.ca.certFile, join(certDir, 'ca.crt'));
    const dest = join(work.path, 'skopeo-tls');
    await assert.rejects(skopeoCopy(pushed.ref, join(work.path, 'noauth'), { srcCertDir: certDir }), /unauthorized|authentication/i);
    const res = await skopeoCopy(pushed.ref, dest, { srcCertDir: certDir, creds: `${TEST_USER}:${TEST_PASSWORD}` });
    assert.equal(res.manifestDigest, img.manifest.digest);
    assert.ok((await verifyCopiedDir(dest)).ok);
    await expectBlobGets(reg, [...img.layers, img.config], 1);
    reg.resetCounts();
  });

  test('ctr with hosts.toml CA and --user', async () => {
    const hostsDir = join(work.path, 'hosts.d');
    await mkdir(join(hostsDir, reg.hostPort), { recursive: true });
    await writeFile(
      join(hostsDir, reg.hostPort, 'hosts.toml'),
      `server = "${reg.url}"\n\n[host."${reg.url}"]\n  capabilities = ["pull", "resolve"]\n  ca = "${tls.ca.certFile}"\n`,
    );
    const ctd = await startContainerd();
    cleanups.push(() => ctd.stop());
    await ctd.ctrPull(pushed.ref, { hostsDir, user: `${TEST_USER}:${TEST_PASSWORD}` });
    const images = await ctd.images();
    assert.equal(images[0]?.digest, img.manifest.digest);
    await expectBlobGets(reg, [...img.layers, img.config], 1);
    await ctd.stop();
    reg.resetCounts();
  });

  test('dockerd with certs.d CA and docker login', async () => {
    const dockerd = await startDockerd({ caCerts: { [reg.hostPort]: tls.ca.certPem } });
    cleanups.push(() => dockerd.stop());
    // dockerd treats registries resolving to 127.0.0.0/8 as insecure: after the
    // HTTPS 401 it falls back to plain HTTP, so the error reported is that of the
    // fallback (connection reset by the TLS listener) rather than the auth failure.
    await assert.rejects(dockerd.pull(pushed.ref), /no basic auth credentials|unauthorized|connection reset/i);
    await dockerd.login(reg.hostPort, TEST_USER, TEST_PASSWORD);
    await dockerd.pull(pushed.ref);
    assert.equal(await dockerd.imageId(pushed.ref), img.config.digest);
    await dockerd.stop();
    assert.ok(!existsSync(`/etc/docker/certs.d/${reg.hostPort}`), 'certs.d entry removed');
  });
});
