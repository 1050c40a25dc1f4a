// The HTTP client both daemons use towards registries and storage: what a redirect may carry to
// another host, and how registry auth challenges and token renewal are read.
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { agentFor } from '../shared/http/agents.js';
import { getFollowing } from '../shared/http/client.js';
import { parseChallenge, RegistryClient } from '../supernode/preheat/registry-client.js';
import { createCa, issueCert, type TestCa } from './fixtures/tls.js';

function listen(s: Server, host: string): Promise<string> {
  return new Promise((r) => s.listen(0, host, () => r(`${host}:${(s.address() as AddressInfo).port}`)));
}
const close = (s: Server) => {
  s.closeAllConnections();
  return new Promise((r) => s.close(r));
};

describe('redirects', () => {
  let ca: TestCa;
  before(async () => {
    ca = await createCa({ commonName: 'redirect CA' });
  });
  after(() => ca.cleanup());

  it('credentials and cookies stay with their origin, also when https storage sends us to plain http', async () => {
    let seen: IncomingHttpHeaders = {};
    const storage = createServer((req, res) => {
      seen = req.headers;
      res.end('blob');
    });
    const b = await listen(storage, '127.0.0.52');
    const leaf = await issueCert(ca, { ips: ['127.0.0.51'], name: 'redirector' });
    const registry = createHttpsServer({ cert: leaf.certPem, key: leaf.keyPem }, (_req, res) => void res.writeHead(307, { location: `http://${b}/signed?X-Amz-Signature=s` }).end());
    const a = await listen(registry as unknown as Server, '127.0.0.51');
    const plain = createServer((_req, res) => void res.writeHead(302, { location: `http://${b}/x` }).end());
    const p = await listen(plain, '127.0.0.53');
    try {
      const headers = { Authorization: 'Bearer T', Cookie: 'sid=S', 'X-Keep': 'yes' };
      const r = await getFollowing(`http://${p}/v2/x/blobs/sha256:0`, { headers, agentFor: (u) => agentFor(u, false, []) });
      r.body.resume();
      assert.equal(seen.authorization, undefined);
      assert.equal(seen.cookie, undefined);
      assert.equal(seen['x-keep'], 'yes', 'other headers go on');
      seen = {};
      // Registries in front of MinIO/S3 over http exist; Docker follows them, and so do we.
      const ok = await getFollowing(`https://${a}/v2/x`, { headers, agentFor: (u) => agentFor(u, false, [ca.certPem]) });
      assert.equal(ok.status, 200);
      ok.body.resume();
      assert.equal(seen.authorization, undefined);
      assert.equal(seen.cookie, undefined);
    } finally {
      await close(storage);
      await close(registry as unknown as Server);
      await close(plain);
    }
  });
});

describe('registry auth', () => {
  it('reads the Bearer challenge out of a header with several, each with its own parameters', () => {
    assert.deepEqual(parseChallenge('Basic realm="Registry Realm", Bearer realm="https://auth/t",service="reg",scope="repository:a/b:pull,push"'), {
      scheme: 'bearer', params: { realm: 'https://auth/t', service: 'reg', scope: 'repository:a/b:pull,push' },
    });
    assert.deepEqual(parseChallenge('Bearer realm=https://h/t, service=s, Basic realm="x"'), { scheme: 'bearer', params: { realm: 'https://h/t', service: 's' } });
    assert.deepEqual(parseChallenge('Basic realm="x"'), { scheme: 'basic', params: { realm: 'x' } });
    assert.deepEqual(parseChallenge('Bearer realm="r",, service="s" , '), { scheme: 'bearer', params: { realm: 'r', service: 's' } }, 'empty list elements');
    assert.deepEqual(parseChallenge('Negotiate oYIB+/x==, Bearer realm="r"'), { scheme: 'bearer', params: { realm: 'r' } }, 'a token68 challenge before it');
    assert.deepEqual(parseChallenge('Basic dXNlcg=='), { scheme: 'basic', params: {} });
    assert.equal(parseChallenge('   '), undefined);
  });

  it('a renewed token is asked for with Harbor\'s Basic credentials again, not anonymously', async () => {
    let issued = 0;
    const tokenAuth: string[] = [];
    const tokens = createServer((req, res) => {
      tokenAuth.push(req.headers.authorization ?? '-');
      if (req.headers.authorization !== `Basic ${Buffer.from('alice:pw').toString('base64')}`) return void res.writeHead(401).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: `tok${++issued}` }));
    });
    const t = await listen(tokens, '127.0.0.55');
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { digest: 'sha256:0', size: 1 }, layers: [] }));
    // Only the newest token works: an older one has "expired".
    const registry = createServer((req, res) => {
      if (req.headers.authorization !== `Bearer tok${issued}` || issued === 0) {
        // Two challenge lines, Basic first: the Bearer one must still be found.
        return void res.writeHead(401, [['www-authenticate', 'Basic realm="reg"'], ['www-authenticate', `Bearer realm="http://${t}/token",service="reg",scope="repository:r/app:pull"`]]).end();
      }
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': manifest.length }).end(manifest);
    });
    const r = await listen(registry, '127.0.0.54');
    try {
      const client = new RegistryClient({ Authorization: `Basic ${Buffer.from('alice:pw').toString('base64')}` }, { tls: { insecure: false, rootCAs: [] }, credentials: null, signal: new AbortController().signal });
      const url = `http://${r}/v2/r/app/manifests/v1`;
      await client.manifest(url, 'r/app');
      issued++;
      await client.renew(url, 'r/app');
      assert.equal(client.headers.Authorization, 'Bearer tok3');
      assert.ok(tokenAuth.every((a) => a.startsWith('Basic ')), `token requests: ${tokenAuth.join(', ')}`);
    } finally {
      await close(registry);
      await close(tokens);
    }
  });
});
