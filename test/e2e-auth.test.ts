// Token auth end to end: docker-registry in token mode with a Harbor-shaped token service
// (realm, service, scope, basic credentials), dockerd logged in and pulling through dfdaemon.
// The registry refuses anonymous blob GETs, so every 200 it logs for a blob that did not come
// from Docker proves the supernode's CDN fetch carried Docker's bearer token.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDockerd } from './fixtures/dockerd.js';
import { addHosts } from './fixtures/hosts.js';
import { buildImage, pushImage, type BuiltImage } from './fixtures/image.js';
import { tmpDir, type TmpDir } from './fixtures/proc.js';
import { startRegistry, type Registry } from './fixtures/registry.js';
import { startTokenIssuer, type TokenIssuer } from './fixtures/token-issuer.js';
import { metric } from './helpers/cluster.js';
import { Cleanups, e2eSkip, loopbackIp, scrape, seedFile, startBin, startBinOnFreePort, type Daemon } from './helpers/e2e.js';
import { getViaProxy } from './helpers/proxy-get.js';

const MiB = 1024 * 1024;
const USER = 'dfts-puller';
const PASSWORD = 'pull-secret';

describe('end to end: pulling from a token-auth registry through dfdaemon', { skip: e2eSkip(), timeout: 600_000 }, () => {
  const cleanups = new Cleanups();
  const tag = randomBytes(3).toString('hex');
  const names = { reg: `harbor-auth-${tag}.test`, sn: `sn-auth-${tag}.test` };
  let t: TmpDir;
  let issuer: TokenIssuer;
  let reg: Registry;
  let df: Daemon;
  let img: BuiltImage;

  before(async () => {
    t = await tmpDir('e2e-auth');
    cleanups.push(() => t.cleanup());
    issuer = await startTokenIssuer({ host: await loopbackIp(), users: { [USER]: PASSWORD }, service: 'harbor-registry' });
    cleanups.push(() => issuer.stop());
    const regIp = await loopbackIp();
    reg = await startRegistry({ host: regIp, hostname: names.reg, auth: issuer.registryAuth });
    cleanups.push(() => reg.stop());
    const snIp = await loopbackIp();
    cleanups.push(await addHosts([{ ip: regIp, name: names.reg }, { ip: snIp, name: names.sn }]));

    img = await buildImage({ layers: [4 * MiB, 1 * MiB], seed: `auth-${tag}` });
    cleanups.push(() => img.cleanup());
    const pushToken = issuer.mint([{ type: 'repository', name: 'library/private', actions: ['pull', 'push'] }]);
    await pushImage(reg.url, 'library/private', 'v1', img, { headers: { Authorization: `Bearer ${pushToken}` } });

    const snCfg = await seedFile('supernode.yml', t.path, { '/home/admin/supernode': join(t.path, 'supernode-home') });
    const sn = await startBin('supernode', ['--config', snCfg, '--download-port=0', '--listen-ip', snIp], snIp, 8002);
    cleanups.push(() => sn.stop());
    const dfIp = await loopbackIp();
    const cfg = await seedFile('dfdaemon-http.yml', t.path, { '<mysupernodehost>': names.sn, '<myharbor_host>': names.reg });
    df = await startBinOnFreePort('dfdaemon', dfIp, (port) => ['--config', cfg, '--port', String(port), '--listen-ip', dfIp], { HOME: t.path });
    cleanups.push(() => df.stop());
  });

  after(() => cleanups.run());

  it('an anonymous blob GET gets the registry\'s own 401 challenge back', async () => {
    const url = `${reg.url}/v2/library/private/blobs/${img.layers[0].digest}`;
    const r = await getViaProxy(df.host, df.port, url);
    assert.equal(r.status, 401);
    assert.match(String(r.headers['www-authenticate']), /^Bearer realm=".*\/token",service="harbor-registry",scope="repository:library\/private:pull"/);
  });

  it('docker login + pull: blobs via P2P, and the CDN fetched each blob once with the token', async () => {
    reg.resetCounts();
    const docker = await startDockerd({ env: { HTTP_PROXY: df.url, HTTPS_PROXY: df.url, NO_PROXY: '' }, insecureRegistries: [reg.hostPort] });
    cleanups.push(() => docker.stop());
    await docker.login(reg.hostPort, USER, PASSWORD);
    const ref = `${reg.hostPort}/library/private:v1`;
    await docker.pull(ref);
    assert.equal(await docker.imageId(ref), img.config.digest);

    const text = await scrape(df.url);
    assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'p2p' }), 3, 'both layers and the config through P2P');
    assert.equal(metric(text, 'dfdaemon_source_bytes_total'), 0);
    const granted = issuer.requests.filter((r) => r.user === USER && r.authenticated === true && r.status === 200);
    assert.ok(granted.some((r) => r.scopes.includes('repository:library/private:pull')), 'docker got a pull token with its credentials');
    // Docker got every blob from dfdaemon, and dfdaemon none from the registry, so the blob
    // GETs the registry logs are the CDN's: each one authorised, none refused.
    for (const b of [...img.layers, img.config]) {
      const gets = reg.requests().filter((r) => r.method === 'GET' && r.digest === b.digest);
      assert.deepEqual(gets.map((g) => [g.status, g.bytes]), [[200, b.size]], `the CDN's GET of ${b.digest}`);
    }
    await docker.stop();
  });

  it('a blob the swarm has cached is still refused to a client the registry would refuse', async () => {
    // The previous test left every blob in the supernode's CDN and in this dfdaemon's cache.
    const url = `${reg.url}/v2/library/private/blobs/${img.layers[0].digest}`;
    const anonymous = await getViaProxy(df.host, df.port, url);
    assert.equal(anonymous.status, 401, 'no token: the registry\'s own challenge, not the cached bytes');
    assert.notEqual(anonymous.sha256, img.layers[0].digest.slice(7));
    const wrongRepo = issuer.mint([{ type: 'repository', name: 'library/other', actions: ['pull'] }]);
    const other = await getViaProxy(df.host, df.port, url, { Authorization: `Bearer ${wrongRepo}` });
    assert.ok(other.status === 401 || other.status === 403, `a token for another repository: ${other.status}`);
    const token = issuer.mint([{ type: 'repository', name: 'library/private', actions: ['pull'] }]);
    const before = reg.requests().filter((r) => r.method === 'GET' && r.digest === img.layers[0].digest).length;
    const ok = await getViaProxy(df.host, df.port, url, { Authorization: `Bearer ${token}` });
    assert.equal(ok.status, 200);
    assert.equal(`sha256:${ok.sha256}`, img.layers[0].digest);
    const after = reg.requests().filter((r) => r.method === 'GET' && r.digest === img.layers[0].digest).length;
    assert.equal(after, before, 'served from the cache: the registry was only asked, with a HEAD');
  });
});
