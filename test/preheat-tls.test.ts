// The guide's self-signed HTTPS Harbor: preheat fails clearly on an untrusted certificate, and
// works once preheat.certs names the CA (manifests and the CDN's blob fetches alike) or with
// preheat.insecure.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { taskId } from '../shared/protocol/taskid.js';
import type { Supernode } from '../supernode/server.js';
import { buildOciImage, pushImage, type BuiltImage } from './fixtures/image.js';
import { tmpDir, waitFor, type TmpDir } from './fixtures/proc.js';
import { startRegistry, type Registry } from './fixtures/registry.js';
import { makeServerTls, type ServerTls } from './fixtures/tls.js';
import { supernodeAt } from './helpers/cluster.js';
import { Cleanups, loopbackIp } from './helpers/e2e.js';

const skip = process.env.CI !== 'true' && !existsSync('/usr/bin/docker-registry') ? 'needs /usr/bin/docker-registry' : false;

describe('preheat from a registry with a self-signed certificate', { skip, timeout: 60_000 }, () => {
  const cleanups = new Cleanups();
  let t: TmpDir;
  let tls: ServerTls;
  let reg: Registry;
  let img: BuiltImage;

  async function preheat(yaml: string): Promise<{ sn: Supernode; view: Record<string, string> }> {
    const sn = await supernodeAt(t.path, await loopbackIp(), yaml);
    cleanups.push(() => sn.close());
    const root = `http://${(sn.api.server.address() as AddressInfo).address}:${sn.apiPort}`;
    const res = await fetch(`${root}/preheats`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'image', url: `${reg.url}/v2/library/secure/manifests/v1`, headers: {} }),
    });
    const { ID } = (await res.json()) as { ID: string };
    const view = await waitFor(async () => {
      const v = (await (await fetch(`${root}/preheats/${ID}`)).json()) as Record<string, string>;
      return v.status === 'SUCCESS' || v.status === 'FAILED' ? v : undefined;
    }, { timeoutMs: 20_000 });
    return { sn, view };
  }

  const cachedAll = (sn: Supernode) =>
    [...img.layers, img.config].every((b) => sn.cdn.get(taskId(`${reg.url}/v2/library/secure/blobs/${b.digest}`))?.status === 'SUCCESS');

  before(async () => {
    t = await tmpDir('preheat-tls');
    cleanups.push(() => t.cleanup());
    const ip = await loopbackIp();
    tls = await makeServerTls({ ips: [ip] });
    cleanups.push(() => tls.cleanup());
    reg = await startRegistry({ host: ip, tls: { cert: tls.certFile, key: tls.keyFile } });
    cleanups.push(() => reg.stop());
    img = await buildOciImage({ layers: [200 * 1024], seed: 'tls' });
    cleanups.push(() => img.cleanup());
    await pushImage(reg.url, 'library/secure', 'v1', img, { ca: tls.ca.certPem });
  });

  after(() => cleanups.run());

  it('an untrusted certificate fails the job and says so', async () => {
    const { view } = await preheat('');
    assert.equal(view.status, 'FAILED');
    assert.match(view.errorMsg, /cannot reach https:\/\/.*(SELF_SIGNED|UNABLE_TO_VERIFY).*; trust the registry's CA with preheat\.certs/);
  });

  it('preheat.certs trusts the CA for manifests and blobs', async () => {
    const { sn, view } = await preheat(`preheat:\n  certs: [${tls.ca.certFile}]\n`);
    assert.equal(view.status, 'SUCCESS', view.errorMsg);
    assert.ok(cachedAll(sn));
  });

  it('preheat.insecure skips verification', async () => {
    const { sn, view } = await preheat('preheat:\n  insecure: true\n');
    assert.equal(view.status, 'SUCCESS', view.errorMsg);
    assert.ok(cachedAll(sn));
  });
});
