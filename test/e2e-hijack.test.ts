// The user guide's three dfdaemon.yml variants, each with a real dockerd using dfdaemon as its
// HTTP(S)_PROXY, against Debian's docker-registry:
//   1. HTTP Harbor: no hijack cert; plain-HTTP pulls go through P2P, HTTPS stays a blind tunnel.
//   2. HTTPS Harbor: a CA from `dfdaemon gen-ca`; the registry's certificate is from a CA in
//      the "system" store (SSL_CERT_FILE), Docker trusts the dfdaemon CA for the registry.
//   3. Self-signed Harbor: df.crt made with the guide's openssl recipe (not a CA: presented as
//      is, so Docker lists the registry in insecure-registries, as the guide says), and the
//      registry's CA known only from `certs: ["ca.crt"]` next to the config file; the supernode
//      learns it from the registration's rootCAs.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDockerd } from './fixtures/dockerd.js';
import { addHosts } from './fixtures/hosts.js';
import { buildImage, pushImage, type BuiltImage } from './fixtures/image.js';
import { runOk, tmpDir, type TmpDir } from './fixtures/proc.js';
import { startRegistry, type Registry } from './fixtures/registry.js';
import { createCa, issueCert, type TestCa } from './fixtures/tls.js';
import { metric } from './helpers/cluster.js';
import { Cleanups, e2eSkip, expectBlobGets, loopbackIp, REPO_ROOT, scrape, seedFile, startBin, startBinOnFreePort, type Daemon } from './helpers/e2e.js';
import { systemCAs } from '../shared/tls/ca-store.js';

const MiB = 1024 * 1024;

describe('end to end: the guide\'s three dfdaemon.yml variants with dockerd as the client', { skip: e2eSkip(), timeout: 600_000 }, () => {
  const cleanups = new Cleanups();
  const tag = randomBytes(3).toString('hex');
  const names = { http: `harbor-h-${tag}.test`, https: `harbor-s-${tag}.test`, self: `harbor-b-${tag}.test`, sn: `sn-${tag}.test` };
  let t: TmpDir;
  let publicCa: TestCa;
  let selfCa: TestCa;
  let bundle: string;
  let regHttp: Registry;
  let regHttps: Registry;
  let regSelf: Registry;

  const blobsOf = (img: BuiltImage) => [...img.layers.map((l) => ({ digest: l.digest, size: l.size })), { digest: img.config.digest, size: img.config.size }];
  const proxyEnv = (d: Daemon) => ({ HTTP_PROXY: d.url, HTTPS_PROXY: d.url, NO_PROXY: '' });

  async function push(reg: Registry, ca: TestCa | undefined, name: string, layers: number[]): Promise<BuiltImage> {
    const img = await buildImage({ layers, seed: `${tag}-${name}` });
    cleanups.push(() => img.cleanup());
    await pushImage(reg.url, 'library/app', name, img, { ca: ca?.certPem });
    return img;
  }

  async function startDfdaemon(seed: string, dir: string, subst: Record<string, string>, env: Record<string, string> = {}): Promise<Daemon> {
    const ip = await loopbackIp();
    const cfg = await seedFile(seed, dir, subst);
    const d = await startBinOnFreePort('dfdaemon', ip, (port) => ['--config', cfg, '--port', String(port), '--listen-ip', ip], { HOME: dir, ...env });
    cleanups.push(() => d.stop());
    return d;
  }

  async function registryWithTls(ca: TestCa, name: string): Promise<Registry> {
    const ip = await loopbackIp();
    const leaf = await issueCert(ca, { dnsNames: [name], name });
    const reg = await startRegistry({ host: ip, hostname: name, tls: { cert: leaf.certFile, key: leaf.keyFile } });
    cleanups.push(() => reg.stop());
    return reg;
  }

  before(async () => {
    t = await tmpDir('e2e-hijack');
    cleanups.push(() => t.cleanup());
    publicCa = await createCa({ commonName: 'stand-in public CA' });
    cleanups.push(() => publicCa.cleanup());
    selfCa = await createCa({ commonName: 'self-signed Harbor CA' });
    cleanups.push(() => selfCa.cleanup());
    // The machine's CA store plus one more CA: what a publicly trusted Harbor certificate is
    // to a host that trusts the system store.
    bundle = join(t.path, 'system-plus-public.pem');
    await writeFile(bundle, [...systemCAs(), publicCa.certPem].join('\n'));

    const httpIp = await loopbackIp();
    regHttp = await startRegistry({ host: httpIp, hostname: names.http });
    cleanups.push(() => regHttp.stop());
    regHttps = await registryWithTls(publicCa, names.https);
    regSelf = await registryWithTls(selfCa, names.self);
    const snIp = await loopbackIp();
    cleanups.push(
      await addHosts([
        { ip: httpIp, name: names.http },
        { ip: regHttps.host, name: names.https },
        { ip: regSelf.host, name: names.self },
        { ip: snIp, name: names.sn },
      ]),
    );
    const snCfg = await seedFile('supernode.yml', t.path, { '/home/admin/supernode': join(t.path, 'supernode-home') });
    const sn = await startBin('supernode', ['--config', snCfg, '--download-port=0', '--listen-ip', snIp], snIp, 8002, { SSL_CERT_FILE: bundle });
    cleanups.push(() => sn.stop());
  });

  after(() => cleanups.run());

  it('variant 1 (HTTP Harbor): plain-HTTP blobs go through P2P; an HTTPS registry is tunnelled untouched', async () => {
    const dir = join(t.path, 'v1');
    await mkdir(dir);
    const df = await startDfdaemon('dfdaemon-http.yml', dir, { '<mysupernodehost>': names.sn, '<myharbor_host>': names.http });
    const viaP2P = await push(regHttp, undefined, 'v1', [4 * MiB, 1 * MiB]);
    const tunnelled = await push(regHttps, publicCa, 'v1-tunnel', [2 * MiB]);
    const docker = await startDockerd({ env: proxyEnv(df), insecureRegistries: [regHttp.hostPort, regHttps.hostPort] });
    cleanups.push(() => docker.stop());

    await docker.pull(`${regHttp.hostPort}/library/app:v1`);
    assert.equal(await docker.imageId(`${regHttp.hostPort}/library/app:v1`), viaP2P.config.digest);
    let text = await scrape(df.url);
    assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'p2p' }), 3, 'both layers and the config through P2P');
    assert.equal(metric(text, 'dfdaemon_source_bytes_total'), 0);
    await expectBlobGets(regHttp, blobsOf(viaP2P), 1);

    await docker.pull(`${regHttps.hostPort}/library/app:v1-tunnel`);
    assert.equal(await docker.imageId(`${regHttps.hostPort}/library/app:v1-tunnel`), tunnelled.config.digest);
    text = await scrape(df.url);
    assert.ok(metric(text, 'dfdaemon_requests_total', { route: 'tunnel' }) >= 1, 'the CONNECT was tunnelled');
    assert.equal(metric(text, 'dfdaemon_requests_total', { route: 'hijacked' }), 0, 'no cert, no hijack');
    assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'p2p' }), 3, 'nothing more went through P2P');
    await docker.stop();
  });

  it('variant 2 (HTTPS Harbor): hijacked with a gen-ca CA that Docker trusts; blobs through P2P', async () => {
    const dir = join(t.path, 'v2');
    const keys = join(dir, 'keys');
    await mkdir(dir);
    await runOk(join(REPO_ROOT, 'bin', 'dfdaemon'), ['gen-ca', '--out', keys, '--cn', 'dfdaemon test CA']);
    const df = await startDfdaemon(
      'dfdaemon-https.yml',
      dir,
      { '/keys/': `${keys}/`, '<mysupernodehost>:8002': `${names.sn}:8002`, '<myharbor>:9443': regHttps.hostPort },
      { SSL_CERT_FILE: bundle },
    );
    const img = await push(regHttps, publicCa, 'v2', [4 * MiB, 1 * MiB]);
    // Docker verifies the hijack leaf strictly: certs.d holds the dfdaemon CA, not the registry's.
    const docker = await startDockerd({ env: proxyEnv(df), caCerts: { [regHttps.hostPort]: await readFile(join(keys, 'df.crt'), 'utf8') } });
    cleanups.push(() => docker.stop());
    const ref = `${regHttps.hostPort}/library/app:v2`;
    await docker.pull(ref);
    assert.equal(await docker.imageId(ref), img.config.digest);
    const text = await scrape(df.url);
    assert.ok(metric(text, 'dfdaemon_requests_total', { route: 'hijacked' }) >= 1);
    assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'p2p' }), 3);
    assert.ok(metric(text, 'dfdaemon_piece_bytes_total', { source: 'supernode' }) >= 5 * MiB);
    assert.equal(metric(text, 'dfdaemon_source_bytes_total'), 0);
    await expectBlobGets(regHttps, blobsOf(img), 1);
    await docker.stop();
  });

  it('variant 3 (self-signed Harbor): the guide\'s openssl df.crt, the registry CA from certs: ["ca.crt"]', async () => {
    const dir = join(t.path, 'v3');
    const keys = join(dir, 'keys');
    await mkdir(keys, { recursive: true });
    // The user guide's recipe, with -subj instead of the interactive prompt.
    await runOk('openssl', ['genrsa', '-des3', '-passout', 'pass:dfts1234', '-out', join(keys, 'df.pass.key'), '2048']);
    await runOk('openssl', ['rsa', '-passin', 'pass:dfts1234', '-in', join(keys, 'df.pass.key'), '-out', join(keys, 'df.key')]);
    await runOk('openssl', ['req', '-new', '-key', join(keys, 'df.key'), '-out', join(keys, 'df.csr'), '-subj', '/CN=dfdaemon']);
    await runOk('openssl', ['x509', '-req', '-sha256', '-days', '365', '-in', join(keys, 'df.csr'), '-signkey', join(keys, 'df.key'), '-out', join(keys, 'df.crt')]);
    await copyFile(selfCa.certFile, join(dir, 'ca.crt'));
    const df = await startDfdaemon('dfdaemon-selfsigned.yml', dir, {
      '/keys/': `${keys}/`,
      '<mysupernodehost></mysupernodehost>:8002': `${names.sn}:8002`,
      '<myharbor></myharbor>:9443': regSelf.hostPort,
    });
    const img = await push(regSelf, selfCa, 'v3', [4 * MiB, 1 * MiB]);
    const docker = await startDockerd({ env: proxyEnv(df), insecureRegistries: [regSelf.hostPort] });
    cleanups.push(() => docker.stop());
    const ref = `${regSelf.hostPort}/library/app:v3`;
    await docker.pull(ref);
    assert.equal(await docker.imageId(ref), img.config.digest);
    const text = await scrape(df.url);
    assert.ok(metric(text, 'dfdaemon_requests_total', { route: 'hijacked' }) >= 1);
    assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'p2p' }), 3);
    assert.equal(metric(text, 'dfdaemon_source_bytes_total'), 0, 'the supernode reached the registry with the CA from rootCAs');
    await expectBlobGets(regSelf, blobsOf(img), 1);
    await docker.stop();
  });
});
