// proxies rules in front of a registry: only blob GETs go through P2P (manifests keep their
// media type and digest, tags stay fresh), containerd's `?ns=` does not split a blob's task,
// and `redirect` replaces host and port together and is checked when the config loads.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Dfdaemon } from '../dfdaemon/daemon.js';
import { routeAbsolute } from '../dfdaemon/proxy/router.js';
import { loadDfdaemonConfig } from '../shared/config/dfdaemon.js';
import { ConfigError } from '../shared/errors.js';
import type { Supernode } from '../supernode/server.js';
import { dfdaemonAt, metric, supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { getViaProxy } from './helpers/proxy-get.js';

const MANIFEST_TYPE = 'application/vnd.docker.distribution.manifest.v2+json';
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfts-route-reg-'));
});
after(() => rm(dir, { recursive: true, force: true }));

async function configFrom(name: string, yaml: string) {
  const file = join(dir, `${name}.yml`);
  await writeFile(file, yaml);
  return loadDfdaemonConfig({ file, defaultFile: null, env: { HOME: dir } });
}

describe('proxies rules for a registry host', () => {
  const digest = 'a'.repeat(64);
  let rules: Awaited<ReturnType<typeof configFrom>>['proxies'];
  before(async () => {
    rules = (await configFrom('host-rule', 'proxies:\n  - regx: reg\\.test\n    use_https: true\n  - regx: .*\\.iso$\n')).proxies;
  });

  it('sends only blob GETs through P2P; manifests, tags, /v2/ and other API paths pass through, upgraded', () => {
    const blob = routeAbsolute(`http://reg.test/v2/library/app/blobs/sha256:${digest}`, 'GET', rules);
    assert.deepEqual(blob, { kind: 'p2p', url: `https://reg.test/v2/library/app/blobs/sha256:${digest}`, redirected: false });
    for (const path of ['/v2/', '/v2', '/v2/library/app/manifests/v1', `/v2/library/app/manifests/sha256:${digest}`,
      '/v2/library/app/tags/list', '/v2/_catalog', '/v2/library/app/blobs/uploads/', `/v2/library/app/blobs/sha256:${digest}/x`]) {
      assert.deepEqual(routeAbsolute(`http://reg.test${path}`, 'GET', rules), { kind: 'direct', url: `https://reg.test${path}`, redirected: false }, path);
    }
  });

  it('keeps a plain file download a rule matches going through P2P', () => {
    assert.equal(routeAbsolute('http://files.test/images/debian.iso', 'GET', rules).kind, 'p2p');
    assert.equal(routeAbsolute('http://files.test/v2.iso', 'GET', rules).kind, 'p2p');
  });
});

describe('redirect', () => {
  const url = 'http://old.test:5000/v2/library/app/blobs/sha256:' + 'b'.repeat(64);
  const redirectTo = async (to: string) =>
    routeAbsolute(url, 'GET', (await configFrom('redirect', `proxies:\n  - regx: old\\.test\n    redirect: ${JSON.stringify(to)}\n`)).proxies).url;

  it('replaces host and port together: no port in the redirect means the default port', async () => {
    assert.equal(await redirectTo('new.test'), url.replace('old.test:5000', 'new.test'));
    assert.equal(await redirectTo('new.test:6000'), url.replace('old.test:5000', 'new.test:6000'));
    assert.equal(await redirectTo('127.0.0.9'), url.replace('old.test:5000', '127.0.0.9'));
    assert.equal(await redirectTo('[::1]:7000'), url.replace('old.test:5000', '[::1]:7000'));
  });

  it('refuses at load anything but host[:port], naming the key', async () => {
    for (const bad of ['https://new.test', 'new.test/v2', 'new.test:0', 'new.test:70000', 'new.test:', 'user@new.test', '[zz]:80']) {
      await assert.rejects(
        configFrom('redirect-bad', `proxies:\n  - regx: old\\.test\n  - regx: x\n    redirect: ${JSON.stringify(bad)}\n`),
        (err: unknown) => err instanceof ConfigError && err.key === 'proxies[1].redirect' && /host\[:port\]/.test(err.message),
        bad,
      );
    }
  });
});

describe('a registry behind a host rule, through dfdaemon (in-process)', () => {
  // A registry stand-in: /v2/, a tag that can be re-pushed, and blobs from the counting origin;
  // with Content-Length, as docker-registry sends (the CDN takes nothing without one).
  const regIp = '127.0.0.151';
  const snIp = '127.0.0.152';
  const dfIp = '127.0.0.153';
  const mirrorIp = '127.0.0.154';
  let origin: Origin;
  let registry: Server;
  let regPort: number;
  let sn: Supernode;
  let df: Dfdaemon;
  let mirror: Dfdaemon;
  let manifest = JSON.stringify({ schemaVersion: 2, mediaType: MANIFEST_TYPE, tag: 'first' });
  const seen: string[] = [];

  before(async () => {
    origin = await startOrigin('127.0.0.150');
    const blobs = origin.server.listeners('request')[0] as (req: IncomingMessage, res: ServerResponse) => void;
    registry = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      if (req.url === '/v2/') {
        return void res.writeHead(200, { 'content-type': 'application/json', 'content-length': 2, 'docker-distribution-api-version': 'registry/2.0' }).end('{}');
      }
      if (req.url === '/v2/library/app/manifests/v1') {
        const headers = { 'content-type': MANIFEST_TYPE, 'content-length': Buffer.byteLength(manifest), 'docker-content-digest': `sha256:${sha(manifest)}` };
        return void res.writeHead(200, headers).end(manifest);
      }
      blobs(req, res);
    });
    await new Promise<void>((r) => registry.listen(0, regIp, () => r()));
    regPort = (registry.address() as AddressInfo).port;
    sn = await supernodeAt(dir, snIp);
    // A rule for the whole registry host, as the Dragonfly template's `some-registry/`.
    df = await dfdaemonAt(dir, dfIp, [`${snIp}:${sn.apiPort}`], 'ratelimit: 1G\n', [`  - regx: ${regIp.replace(/\./g, '\\.')}:${regPort}/`]);
    mirror = await dfdaemonAt(dir, mirrorIp, [`${snIp}:${sn.apiPort}`], `ratelimit: 1G\nregistry_mirror:\n  remote: http://${regIp}:${regPort}\n`);
  });

  after(async () => {
    await df?.close();
    await mirror?.close();
    await sn?.close();
    registry?.closeAllConnections();
    await new Promise((r) => registry?.close(r));
    await origin?.close();
  });

  it('manifests and /v2/ keep their media type and headers, and a re-pushed tag is seen at once', async () => {
    const base = `http://${regIp}:${regPort}`;
    const ping = await getViaProxy(dfIp, df.port, `${base}/v2/`);
    assert.equal(ping.status, 200);
    assert.equal(ping.headers['docker-distribution-api-version'], 'registry/2.0');
    assert.equal(ping.headers['content-type'], 'application/json');

    const first = await getViaProxy(dfIp, df.port, `${base}/v2/library/app/manifests/v1`, { accept: MANIFEST_TYPE });
    assert.equal(first.status, 200);
    assert.equal(first.headers['content-type'], MANIFEST_TYPE);
    assert.equal(first.headers['docker-content-digest'], `sha256:${sha(manifest)}`);
    assert.equal(first.sha256, sha(manifest));

    manifest = JSON.stringify({ schemaVersion: 2, mediaType: MANIFEST_TYPE, tag: 'second' });
    const again = await getViaProxy(dfIp, df.port, `${base}/v2/library/app/manifests/v1`, { accept: MANIFEST_TYPE });
    assert.equal(again.sha256, sha(manifest), 'the re-pushed tag, not a cached copy');

    const blob = randomBlob(3 * 1024 * 1024 + 11);
    const d = origin.add(blob);
    const got = await getViaProxy(dfIp, df.port, `${base}/v2/library/app/blobs/sha256:${d}`);
    assert.equal(got.status, 200);
    assert.equal(got.sha256, d);
    const text = await df.metrics.registry.metrics();
    assert.equal(metric(text, 'dfdaemon_requests_total', { route: 'p2p' }), 1, 'only the blob went through P2P');
    assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'p2p' }), 1);
  });

  it("containerd's ?ns= and Docker's plain GET of one blob make one task: one origin fetch, ns still sent upstream", async () => {
    const blob = randomBlob(2 * 1024 * 1024 + 5);
    const d = origin.add(blob);
    const path = `/v2/library/app/blobs/sha256:${d}`;
    const ns = `?ns=${encodeURIComponent(`${regIp}:${regPort}`)}`;
    const ctr = await fetch(`http://${mirrorIp}:${mirror.port}${path}${ns}`);
    assert.equal(ctr.status, 200);
    assert.equal(sha(Buffer.from(await ctr.arrayBuffer())), d);
    const docker = await fetch(`http://${mirrorIp}:${mirror.port}${path}`);
    assert.equal(docker.status, 200);
    assert.equal(sha(Buffer.from(await docker.arrayBuffer())), d);
    assert.equal(origin.requests.get(d), 1, 'the CDN fetched the blob once for both');
    assert.ok(seen.includes(`GET ${path}${ns}`), `the fetch upstream keeps ns: ${seen.filter((s) => s.includes(d)).join(' ; ')}`);
    const text = await mirror.metrics.registry.metrics();
    assert.equal(metric(text, 'dfdaemon_blobs_total'), 2, 'both served by the dfdaemon, not passed through');
    assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'p2p' }), 1, 'the second from the first one\'s task');
  });
});

describe('redirect without a port, live', () => {
  // The redirect target listens on port 80: the rule's request names :5000, which must not stick.
  const targetIp = '127.0.0.156';
  let target: Server | undefined;
  let sn: Supernode;

  before(async () => {
    target = createServer((_req, res) => void res.writeHead(200, { 'content-type': 'text/plain' }).end('redirected'));
    await new Promise<void>((r) => target!.listen(80, targetIp, () => r()));
    sn = await supernodeAt(dir, '127.0.0.157');
  });
  after(async () => {
    await sn?.close();
    target?.closeAllConnections();
    await new Promise((r) => target?.close(r));
  });

  it('GET http://old.test:5000/v2/ with redirect 127.0.0.156 reaches 127.0.0.156:80', async () => {
    const d = await dfdaemonAt(dir, '127.0.0.159', [`127.0.0.157:${sn.apiPort}`], 'ratelimit: 1G\n', ['  - regx: old\\.test', `    redirect: ${targetIp}`]);
    try {
      const res = await getViaProxy('127.0.0.159', d.port, 'http://old.test:5000/v2/');
      assert.equal(res.status, 200);
      assert.equal(res.sha256, sha('redirected'));
    } finally {
      await d.close();
    }
  });
});
