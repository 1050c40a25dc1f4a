// HTTPS hijacking in process: per-host leaves signed by a CA made with `dfdaemon gen-ca`, an
// HTTPS origin whose certificate only a configured `certs` file vouches for, and a client that
// goes through CONNECT, as Docker does with HTTPS_PROXY.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { connect as netConnect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { ProxyAgent, request } from 'undici';
import { genCa } from '../dfdaemon/cli/gen-ca.js';
import type { Dfdaemon } from '../dfdaemon/daemon.js';
import { HijackCerts } from '../dfdaemon/proxy/hijack-certs.js';
import { createLogger } from '../shared/log/index.js';
import { buildCertificate } from '../shared/tls/x509-build.js';
import type { Supernode } from '../supernode/server.js';
import { createCa, type TestCa } from './fixtures/tls.js';
import { dfdaemonAt, metric, supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { tlsViaProxy, hijackYaml } from './helpers/proxy-get.js';
import { originHandler, serveTls } from './helpers/tls-server.js';

const quiet = createLogger('test', { level: 'silent' });

/** CONNECT through the proxy, then TLS with `ca` trusted; returns what the server presented. */
async function peerCertVia(proxyPort: number, proxyHost: string, target: string, ca: string): Promise<PeerCertificate> {
  const t = await tlsViaProxy(proxyHost, proxyPort, target, ca);
  const cert = t.getPeerCertificate();
  t.destroy();
  return cert;
}

/** Write raw bytes to host:port and collect everything until the server closes. */
function rawExchange(port: number, host: string, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ port, host }, () => s.write(bytes));
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (c) => (got += c));
    s.once('error', reject);
    s.once('close', () => resolve(got));
    s.setTimeout(10_000, () => s.destroy(new Error(`no close; got ${JSON.stringify(got)}`)));
  });
}

/** Through a hijacked CONNECT, send one raw request inside TLS and return the raw answer. */
async function hijackedExchange(proxyPort: number, proxyHost: string, target: string, ca: string, bytes: string): Promise<string> {
  const t = await tlsViaProxy(proxyHost, proxyPort, target, ca);
  return new Promise((resolve, reject) => {
    let got = '';
    t.setEncoding('utf8');
    t.on('data', (c: string) => {
      got += c;
      // One answer with a body is all these requests get; stop once it is complete.
      const m = /content-length: (\d+)\r\n[\s\S]*?\r\n\r\n([\s\S]*)$/i.exec(got);
      if (m && Buffer.byteLength(m[2]) >= Number(m[1])) t.destroy();
    });
    t.once('error', reject);
    t.once('close', () => resolve(got));
    t.write(bytes);
  });
}

describe('hijack certificates', () => {
  let dir: string;
  let caPem: string;
  let caKey: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-hjc-'));
    const { certFile, keyFile } = await genCa({ out: dir, cn: 'hijack test CA', days: 30 });
    caPem = await readFile(certFile, 'utf8');
    caKey = await readFile(keyFile, 'utf8');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('gen-ca writes an RSA CA that verifies itself', () => {
    const x = new X509Certificate(caPem);
    assert.equal(x.ca, true);
    assert.equal(x.publicKey.asymmetricKeyType, 'rsa');
    assert.ok(x.verify(x.publicKey));
    assert.match(x.subject, /CN=hijack test CA/);
  });

  it('issues one leaf per host, with the right SAN, signed by the CA; concurrent calls share it', async () => {
    const certs = new HijackCerts(caPem, caKey, quiet);
    const [a, b] = await Promise.all([certs.contextFor('harbor.test'), certs.contextFor('harbor.test')]);
    assert.equal(a, b, 'one pending leaf for concurrent handshakes');
    assert.equal(certs.cached, 1);
    const ipCtx = await certs.contextFor('127.0.0.9');
    assert.notEqual(ipCtx, a);
    assert.equal(certs.cached, 2);
  });

  it('keeps at most 100 leaves and reissues a leaf close to its expiry', async () => {
    let now = Date.now();
    const certs = new HijackCerts(caPem, caKey, quiet, () => now);
    const first = await certs.contextFor('h0.test');
    for (let i = 1; i <= 120; i++) await certs.contextFor(`h${i}.test`);
    assert.equal(certs.cached, 100);
    const again = await certs.contextFor('h120.test');
    assert.equal(await certs.contextFor('h120.test'), again, 'a cached leaf is reused');
    assert.notEqual(await certs.contextFor('h0.test'), first, 'the oldest leaf was evicted');
    now += 23.5 * 3_600_000;
    assert.notEqual(await certs.contextFor('h120.test'), again, 'a leaf with under an hour left is reissued');
  });

  it('signs leaves with an EC CA as well', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const pem = buildCertificate({
      commonName: 'ec CA', publicKey, signingKey: privateKey, ca: true,
      notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000),
    });
    const certs = new HijackCerts(pem, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, quiet);
    assert.ok(certs.signsLeaves);
    await certs.contextFor('ec.test');
  });

  it('presents a non-CA certificate as is (the user guide\'s openssl recipe)', () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = buildCertificate({
      commonName: 'df', publicKey, signingKey: privateKey, ca: false, hosts: ['df'],
      notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000),
    });
    const certs = new HijackCerts(pem, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, quiet);
    assert.equal(certs.signsLeaves, false);
  });

  it('refuses a key that does not belong to the certificate', () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    assert.throws(() => new HijackCerts(caPem, other, quiet), /does not belong/);
  });
});

describe('HTTPS hijack through dfdaemon (in-process)', () => {
  let dir: string;
  let originCa: TestCa;
  let origin: Origin;
  let https: HttpsServer;
  let httpsPort: number;
  let other: HttpsServer;
  let otherPort: number;
  let sn: Supernode;
  let df: Dfdaemon;
  let dfCa: string;
  const originIp = '127.0.0.41';
  const otherIp = '127.0.0.42';
  const dfIp = '127.0.0.43';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-hj-'));
    originCa = await createCa({ commonName: 'origin CA' });
    origin = await startOrigin('127.0.0.40');
    ({ server: https, port: httpsPort } = await serveTls(originCa, originIp, originHandler(origin)));
    ({ server: other, port: otherPort } = await serveTls(originCa, otherIp, (_req, res) => void res.end('other')));
    sn = await supernodeAt(dir, '127.0.0.44');
    const ca = await genCa({ out: join(dir, 'keys'), cn: 'df CA', days: 2 });
    dfCa = await readFile(ca.certFile, 'utf8');
    // The origin CA is known to dfdaemon only through `certs`; the supernode learns it from
    // the registration's rootCAs.
    const yaml = [
      'ratelimit: 1G',
      ...hijackYaml(ca, [{ regx: `${originIp.replace(/\./g, '\\.')}:${httpsPort}`, certs: [originCa.certFile] }]),
      '',
    ].join('\n');
    df = await dfdaemonAt(dir, dfIp, [`127.0.0.44:${sn.apiPort}`], yaml);
  });

  after(async () => {
    await df?.close();
    await sn?.close();
    https?.closeAllConnections();
    other?.closeAllConnections();
    await new Promise((r) => https?.close(r));
    await new Promise((r) => other?.close(r));
    await origin?.close();
    await originCa?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  it('terminates TLS with a CA-signed leaf for an IP host and streams the blob through P2P', async () => {
    const cert = await peerCertVia(df.port, dfIp, `${originIp}:${httpsPort}`, dfCa);
    assert.equal(cert.subjectaltname, `IP Address:${originIp}`);
    assert.equal(cert.issuer.CN, 'df CA');

    const blob = randomBlob(9 * 1024 * 1024 + 7);
    const d = origin.add(blob);
    const agent = new ProxyAgent({ uri: `http://${dfIp}:${df.port}`, requestTls: { ca: dfCa } });
    try {
      const url = `https://${originIp}:${httpsPort}/v2/library/test/blobs/sha256:${d}`;
      const res = await request(url, { dispatcher: agent });
      assert.equal(res.statusCode, 200);
      const got = createHash('sha256').update(Buffer.from(await res.body.arrayBuffer())).digest('hex');
      assert.equal(got, d);
      const miss = await request(`https://${originIp}:${httpsPort}/v2/`, { dispatcher: agent });
      assert.equal(miss.statusCode, 404, 'a non-blob request passes through to the origin');
      await miss.body.dump();
    } finally {
      await agent.close();
    }
    const text = await df.metrics.registry.metrics();
    assert.ok(metric(text, 'dfdaemon_requests_total', { route: 'hijacked' }) >= 1);
    assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'p2p' }), 1);
    assert.ok(metric(text, 'dfdaemon_piece_bytes_total', { source: 'supernode' }) >= blob.length);
    assert.equal(metric(text, 'dfdaemon_source_bytes_total'), 0);
    assert.equal(origin.requests.get(d), 1, 'the supernode fetched it once, trusting the CA from rootCAs');
  });

  it('registry-mirror mode with `insecure`: origin-form blob GETs go through P2P to an unverifiable HTTPS remote', async () => {
    const yaml = `ratelimit: 1G\nregistry_mirror:\n  remote: https://${originIp}:${httpsPort}\n  insecure: true\n`;
    const mirror = await dfdaemonAt(dir, '127.0.0.45', [`127.0.0.44:${sn.apiPort}`], yaml);
    try {
      const blob = randomBlob(5 * 1024 * 1024);
      const d = origin.add(blob);
      const res = await request(`http://127.0.0.45:${mirror.port}/v2/library/test/blobs/sha256:${d}`);
      assert.equal(res.statusCode, 200);
      assert.equal(createHash('sha256').update(Buffer.from(await res.body.arrayBuffer())).digest('hex'), d);
      const text = await mirror.metrics.registry.metrics();
      assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'p2p' }), 1);
      assert.equal(origin.requests.get(d), 1, 'the supernode skipped verification, as the registration asked');
    } finally {
      await mirror.close();
    }
  });

  it('answers hostile CONNECTs and odd hijacked request-targets with a coded 4xx/5xx and keeps running', async () => {
    const ping = async () => (await request(`http://${dfIp}:${df.port}/_ping`)).statusCode;
    const bad = await rawExchange(df.port, dfIp, 'CONNECT 127.0.0.1:99999 HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match(bad, /^HTTP\/1\.1 400 /);
    assert.match(bad, /"code":"BAD_REQUEST"/);
    // Connection refused upstream: the client gets the reason, not a bare reset.
    const refused = await rawExchange(df.port, dfIp, 'CONNECT 127.0.0.46:1 HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match(refused, /^HTTP\/1\.1 502 /);
    assert.match(refused, /"code":"SOURCE_UNREACHABLE"/);
    for (const line of ['OPTIONS * HTTP/1.1', 'GET https://other.test/v2/ HTTP/1.1']) {
      const got = await hijackedExchange(df.port, dfIp, `${originIp}:${httpsPort}`, dfCa, `${line}\r\nHost: x\r\n\r\n`);
      assert.match(got, /^HTTP\/1\.1 400 /, line);
      assert.match(got, /"code":"BAD_REQUEST"/, line);
    }
    // Clients that reset while the 400 is on its way.
    await Promise.all(Array.from({ length: 60 }, () => new Promise<void>((resolve) => {
      const s = netConnect({ port: df.port, host: dfIp }, () => {
        s.write('CONNECT foo HTTP/1.1\r\nHost: foo\r\n\r\n');
        setImmediate(() => s.resetAndDestroy());
      });
      s.once('error', () => undefined);
      s.once('close', () => resolve());
    })));
    assert.equal(await ping(), 200, 'the daemon is still up');
  });

  it('pass-through: Host is the target URL\'s authority and hop-by-hop headers stop at the proxy, both ways', async () => {
    let seen: Record<string, string | string[] | undefined> = {};
    const echo = createHttpServer((req, res) => {
      seen = req.headers;
      res.writeHead(200, { connection: 'X-Hop', 'x-hop': 'up', 'keep-alive': 'timeout=1', 'proxy-authenticate': 'Basic realm=up', 'x-end': 'kept' }).end('ok');
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.47', () => r()));
    try {
      const port = (echo.address() as AddressInfo).port;
      const raw = await rawExchange(df.port, dfIp, [
        `GET http://127.0.0.47:${port}/x HTTP/1.1`, 'Host: internal-admin.example', 'Connection: close, X-Client-Hop',
        'X-Client-Hop: secret', 'Keep-Alive: timeout=99', 'TE: trailers', 'X-End: sent', '', ''].join('\r\n'));
      assert.match(raw, /^HTTP\/1\.1 200 /);
      assert.equal(seen.host, `127.0.0.47:${port}`);
      assert.equal(seen['x-end'], 'sent');
      for (const h of ['x-client-hop', 'keep-alive', 'te']) assert.equal(seen[h], undefined, `${h} reached the upstream`);
      assert.match(raw, /x-end: kept/i);
      assert.match(raw, /^connection: close\r$/im, 'the client asked to close, and the answer says so, without its own tokens');
      // http-proxy skips its proxyReq hook for Expect: 100-continue; hop-by-hop headers still stop.
      seen = {};
      const expect = await rawExchange(df.port, dfIp, [
        `POST http://127.0.0.47:${port}/y HTTP/1.1`, `Host: 127.0.0.47:${port}`, 'Connection: close, X-Client-Hop', 'X-Client-Hop: secret',
        'Proxy-Authorization: Basic abc', 'Expect: 100-continue', 'Content-Length: 0', '', ''].join('\r\n'));
      assert.match(expect, /HTTP\/1\.1 200 /);
      for (const h of ['x-client-hop', 'proxy-authorization']) assert.equal(seen[h], undefined, `${h} reached the upstream with Expect`);
      for (const h of ['x-hop', 'keep-alive', 'proxy-authenticate']) assert.doesNotMatch(raw, new RegExp(`^${h}:`, 'im'), `${h} reached the client`);
    } finally {
      echo.closeAllConnections();
      await new Promise((r) => echo.close(r));
    }
  });

  it('tunnels a CONNECT that matches no rule blindly: the client sees the real certificate', async () => {
    const cert = await peerCertVia(df.port, dfIp, `${otherIp}:${otherPort}`, originCa.certPem);
    assert.equal(cert.issuer.CN, 'origin CA');
    const text = await df.metrics.registry.metrics();
    assert.ok(metric(text, 'dfdaemon_requests_total', { route: 'tunnel' }) >= 1);
  });
});
