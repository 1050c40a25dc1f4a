// Hijacking an HTTPS registry on port 443 with a corporate-style intermediate CA: clients that
// trust only the root accept the leaves, proxies rules see `https://host/...` (no :443) as
// Dragonfly does, task IDs stay those of the mirror and of a preheat, and a CA whose key
// cannot sign leaves stops the daemon at start-up instead of failing every CONNECT.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { Server as HttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { ProxyAgent, request } from 'undici';
import type { Dfdaemon } from '../dfdaemon/daemon.js';
import { HijackCerts } from '../dfdaemon/proxy/hijack-certs.js';
import { checkHijackKeyPair } from '../shared/config/dfdaemon-startup.js';
import { ConfigError } from '../shared/errors.js';
import { createLogger } from '../shared/log/index.js';
import { taskId } from '../shared/protocol/taskid.js';
import { buildCertificate, keyIdentifier, subjectNameDer } from '../shared/tls/x509-build.js';
import { blobUrl, parseManifestUrl } from '../supernode/preheat/manifest.js';
import type { Supernode } from '../supernode/server.js';
import { createCa, type TestCa } from './fixtures/tls.js';
import { runOk } from './fixtures/proc.js';
import { dfdaemonAt, metric, supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { tlsViaProxy, hijackYaml } from './helpers/proxy-get.js';
import { originHandler, serveTls } from './helpers/tls-server.js';

const quiet = createLogger('test', { level: 'silent' });
const DFDAEMON_MAIN = fileURLToPath(new URL('../dfdaemon/main.js', import.meta.url));
const DAY = 86_400_000;
const pkcs8 = (k: KeyObject) => k.export({ type: 'pkcs8', format: 'pem' }) as string;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfts-hj-chain-'));
});
after(() => rm(dir, { recursive: true, force: true }));

/** A root CA and an intermediate CA it signed, as a corporate PKI hands them out. */
function intermediateCa() {
  const root = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const rootPem = buildCertificate({
    commonName: 'corp root', publicKey: root.publicKey, signingKey: root.privateKey, ca: true,
    notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 30 * DAY),
  });
  const inter = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const interPem = buildCertificate({
    commonName: 'corp intermediate', publicKey: inter.publicKey, signingKey: root.privateKey, ca: true,
    issuerName: subjectNameDer(new X509Certificate(rootPem).raw), issuerKeyId: keyIdentifier(root.publicKey),
    notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 20 * DAY),
  });
  assert.ok(new X509Certificate(interPem).verify(root.publicKey));
  return { rootPem, interPem, interKey: pkcs8(inter.privateKey) };
}

/** CONNECT through the proxy and handshake trusting only `ca`; resolves with the chain's subjects. */
async function handshakeVia(proxyHost: string, proxyPort: number, target: string, ca: string): Promise<string[]> {
  const t = await tlsViaProxy(proxyHost, proxyPort, target, ca);
  const subjects: string[] = [];
  for (let c = t.getPeerCertificate(true); c && subjects.length < 5; c = c.issuerCertificate) {
    subjects.push(String(c.subject.CN));
    if (c.issuerCertificate === c) break;
  }
  t.destroy();
  return subjects;
}

describe('hijack of an HTTPS registry on :443 with an intermediate CA', () => {
  const originIp = '127.0.0.161';
  const snIp = '127.0.0.162';
  const dfIp = '127.0.0.163';
  const mirrorIp = '127.0.0.164';
  let originCa: TestCa;
  let origin: Origin;
  let https: HttpsServer;
  let sn: Supernode;
  let df: Dfdaemon;
  let mirror: Dfdaemon;
  let rootPem: string;

  before(async () => {
    originCa = await createCa({ commonName: 'registry CA' });
    origin = await startOrigin('127.0.0.160');
    ({ server: https } = await serveTls(originCa, originIp, originHandler(origin), { port: 443, name: 'registry' }));
    sn = await supernodeAt(dir, snIp);

    const ca = intermediateCa();
    rootPem = ca.rootPem;
    const certFile = join(dir, 'corp-ca.crt');
    const keyFile = join(dir, 'corp-ca.key');
    // The usual way to ship it: intermediate first, then the root.
    await writeFile(certFile, ca.interPem + ca.rootPem);
    await writeFile(keyFile, ca.interKey);
    const ip = originIp.replace(/\./g, '\\.');
    const node = `${snIp}:${sn.apiPort}`;
    const hijack = ['ratelimit: 1G', ...hijackYaml({ certFile, keyFile }, [{ regx: `^${ip}$`, certs: [originCa.certFile] }]), ''];
    // Written as for a Go client's URL: no :443. It must win over the guide's rule below.
    df = await dfdaemonAt(dir, dfIp, [node], hijack.join('\n'), [`  - regx: ^https://${ip}/v2/excluded/`, '    direct: true', '  - regx: blobs/sha256.*']);
    const remote = ['ratelimit: 1G', 'registry_mirror:', `  remote: https://${originIp}`, `  certs: [${originCa.certFile}]`, ''];
    mirror = await dfdaemonAt(dir, mirrorIp, [node], remote.join('\n'), []);
  });

  after(async () => {
    await df?.close();
    await mirror?.close();
    await sn?.close();
    https?.closeAllConnections();
    await new Promise((r) => https?.close(r));
    await origin?.close();
    await originCa?.cleanup();
  });

  it('presents leaf + intermediate (+ root): a client that trusts only the root accepts it', async () => {
    const chain = await handshakeVia(dfIp, df.port, `${originIp}:443`, rootPem);
    assert.deepEqual(chain.slice(0, 3), [originIp, 'corp intermediate', 'corp root']);
  });

  it('rules see https://host/... without :443, and the blob task ID is the mirror\'s and the preheat\'s', async () => {
    const agent = new ProxyAgent({ uri: `http://${dfIp}:${df.port}`, requestTls: { ca: rootPem } });
    const excluded = origin.add(randomBlob(1024 * 1024 + 1));
    const shared = origin.add(randomBlob(2 * 1024 * 1024 + 3));
    try {
      const a = await request(`https://${originIp}/v2/excluded/app/blobs/sha256:${excluded}`, { dispatcher: agent });
      assert.equal(a.statusCode, 200);
      assert.equal(sha(Buffer.from(await a.body.arrayBuffer())), excluded);
      let text = await df.metrics.registry.metrics();
      assert.equal(metric(text, 'dfdaemon_requests_total', { route: 'p2p' }), 0, 'the direct: true rule matched');
      assert.equal(metric(text, 'dfdaemon_blobs_total'), 0);

      const b = await request(`https://${originIp}/v2/shared/app/blobs/sha256:${shared}`, { dispatcher: agent });
      assert.equal(b.statusCode, 200);
      assert.equal(sha(Buffer.from(await b.body.arrayBuffer())), shared);
      text = await df.metrics.registry.metrics();
      assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'p2p' }), 1);
    } finally {
      await agent.close();
    }
    const preheatUrl = blobUrl(parseManifestUrl(`https://${originIp}/v2/shared/app/manifests/v1`), `sha256:${shared}`);
    assert.equal(preheatUrl, `https://${originIp}/v2/shared/app/blobs/sha256:${shared}`);
    assert.ok(df.store.get(taskId(preheatUrl)), 'the hijacked pull made the task a preheat of the same image makes');

    const m = await fetch(`http://${mirrorIp}:${mirror.port}/v2/shared/app/blobs/sha256:${shared}`);
    assert.equal(m.status, 200);
    assert.equal(sha(Buffer.from(await m.arrayBuffer())), shared);
    assert.ok(mirror.store.get(taskId(preheatUrl)), 'the mirror pull made the same task');
    assert.equal(origin.requests.get(shared), 1, 'one origin fetch for the hijacked and the mirror pull');
  });
});

describe('a hijack CA whose key cannot sign leaves', () => {
  let certFile: string;
  let keyFile: string;

  before(async () => {
    certFile = join(dir, 'ed.crt');
    keyFile = join(dir, 'ed.key');
    await runOk('openssl', [
      'req', '-x509', '-newkey', 'ed25519', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2',
      '-subj', '/CN=ed25519 CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign',
    ]);
  });

  it('is refused when loaded, not at the first CONNECT', async () => {
    const [cert, key] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
    assert.throws(() => new HijackCerts(cert, key, quiet), /cannot sign certificates with a ed25519 key \(RSA or EC only\)/);
    assert.throws(
      () => checkHijackKeyPair({ hijackHttps: { enabled: true, cert: certFile, key: keyFile, hosts: [] } }),
      (err: unknown) => err instanceof ConfigError && err.key === 'hijack_https.key' && /ed25519 key \(RSA or EC only\)/.test(err.message),
    );
  });

  it('makes dfdaemon exit 2 with one line naming hijack_https.key', async () => {
    const file = join(dir, 'ed.yml');
    await writeFile(file, `proxies:\n  - regx: blobs/sha256.*\nhijack_https:\n  cert: ${certFile}\n  key: ${keyFile}\n  hosts:\n    - regx: harbor.test\n`);
    const child = spawn(process.execPath, [DFDAEMON_MAIN, '--port', '0', '--listen-ip', '127.0.0.165', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, HOME: dir },
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = once(child, 'exit');
    for await (const line of createInterface({ input: child.stdout })) {
      if (line.includes('dfdaemon listening')) {
        child.kill('SIGTERM');
        break;
      }
    }
    const [code] = (await exited) as [number | null];
    assert.equal(code, 2, `expected exit 2, got ${code}: ${stderr}`);
    const lines = stderr.trim().split('\n');
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0], /^dfdaemon: hijack_https\.key: .*ed\.key: the CA .*ed\.crt cannot sign certificates with a ed25519 key \(RSA or EC only\)/);
  });
});
