// dfdaemon's proxy at the edges of a connection's life: a long request body, a slow reader at
// the end of a blind tunnel, TLS on its own port, which limit a download gets, and an upstream
// that hangs up without answering.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex, Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { request } from 'undici';
import { startDfdaemon, type Dfdaemon } from '../dfdaemon/daemon.js';
import { createDfdaemonMetrics } from '../dfdaemon/metrics.js';
import { createProxyServer, type ProxyDeps } from '../dfdaemon/proxy/server.js';
import { tunnel } from '../dfdaemon/proxy/tunnel.js';
import { loadDfdaemonConfig } from '../shared/config/dfdaemon.js';
import { createLogger } from '../shared/log/index.js';
import { buildCertificate } from '../shared/tls/x509-build.js';
import type { Supernode } from '../supernode/server.js';
import { dfdaemonAt, supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { getViaProxy } from './helpers/proxy-get.js';

const MiB = 1024 * 1024;
const quiet = createLogger('test', { level: 'silent' });
const HOST = '127.0.0.1';

function listenNet(server: NetServer): Promise<number> {
  return new Promise((resolve) => server.listen(0, HOST, () => resolve((server.address() as AddressInfo).port)));
}

/** A self-signed certificate for `ip`, as an operator's certpem/keypem. */
function selfSigned(ip = HOST): { cert: string; key: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const cert = buildCertificate({
    commonName: ip, publicKey, signingKey: privateKey, ca: false, hosts: [ip],
    notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000),
  });
  return { cert, key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

describe('dfdaemon proxy edges', () => {
  let dir: string;
  let origin: Origin;
  const daemons: Dfdaemon[] = [];
  const servers: NetServer[] = [];
  let plainDf: Dfdaemon | undefined;
  /** A plain-HTTP daemon for pass-through only: the supernode it names listens nowhere. */
  const plain = async () => {
    if (!plainDf) daemons.push((plainDf = await dfdaemonAt(dir, HOST, [`${HOST}:1`])));
    return plainDf;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-edges-'));
    origin = await startOrigin(HOST);
  });
  after(async () => {
    for (const d of daemons) await d.close();
    for (const s of servers) s.close();
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('lets a request body take longer than Node\'s 5-minute requestTimeout, yet bounds a request head', async () => {
    // A push of a large layer streams its PATCH/PUT body through the pass-through for as long
    // as the link needs; Node's default would answer 408 after 300 s and drop the socket.
    const file = join(dir, 'factory.yml');
    await writeFile(file, `port: 0\nworkHome: ${join(dir, 'factory')}\n`);
    const cfg = loadDfdaemonConfig({ file, defaultFile: null });
    const deps = { cfg, metrics: createDfdaemonMetrics(), log: quiet, servesPeers: false } as unknown as ProxyDeps;
    for (const [what, d] of [['plain', deps], ['tls', { ...deps, tls: selfSigned() }]] as const) {
      const { server } = createProxyServer(d);
      assert.equal(server.requestTimeout, 0, `${what}: no limit on a whole request`);
      assert.ok(server.headersTimeout > 0 && server.headersTimeout <= 60_000, `${what}: headersTimeout ${server.headersTimeout}`);
    }
  });

  it('delivers all of a tunnelled response to a client that is still reading when the upstream closes', async () => {
    const size = 8 * MiB;
    const payload = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4) payload.writeUInt32BE(i, i);
    const upstream = createNetServer((s) => {
      s.on('error', () => undefined);
      s.end(payload);
    });
    servers.push(upstream);
    const upPort = await listenNet(upstream);
    // Through a real proxy port, the kernel's socket buffers on loopback take most of the tail,
    // and what Node still queues when the upstream closes is a matter of timing. This client
    // stands for Docker at the end of a slow link: each write takes a moment to leave, and once
    // destroyed, like a socket, it drops whatever it had not yet sent.
    const sent: Buffer[] = [];
    const link = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        setTimeout(() => {
          if (!link.destroyed) sent.push(chunk);
          cb();
        }, 2);
      },
    });
    link.on('error', () => undefined);
    tunnel({ host: HOST, port: upPort }, link, Buffer.alloc(0), quiet);
    await new Promise<void>((resolve) => {
      link.once('finish', resolve);
      link.once('close', resolve);
    });
    link.destroy();
    const got = Buffer.concat(sent);
    const headEnd = got.indexOf('\r\n\r\n');
    assert.match(got.subarray(0, headEnd).toString(), /^HTTP\/1\.1 200/);
    const body = got.subarray(headEnd + 4);
    assert.equal(body.length, size, `received ${body.length} of ${size} bytes`);
    assert.ok(body.equals(payload), 'the bytes arrive unchanged');
  });

  it('serves its own port over TLS with certpem/keypem, and peers still over plain HTTP', async () => {
    const ip = '127.0.0.73';
    const { cert, key } = selfSigned(ip);
    await writeFile(join(dir, 'own.crt'), cert);
    await writeFile(join(dir, 'own.key'), key);
    const df = await dfdaemonAt(dir, ip, [`${HOST}:1`], `certpem: ${join(dir, 'own.crt')}\nkeypem: ${join(dir, 'own.key')}\n`);
    daemons.push(df);

    const viaTls = (path: string) =>
      new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
        const req = httpsRequest({ host: ip, port: df.port, ca: cert, path, headers: { host: path.startsWith('/') ? ip : new URL(path).host } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        });
        req.once('error', reject);
        req.end();
      });
    const ping = await viaTls('/_ping');
    assert.equal(ping.status, 200);
    assert.equal(ping.body.toString().trim(), 'OK');
    const blob = randomBlob(256 * 1024);
    const digest = origin.add(blob);
    const passed = await viaTls(`${origin.url}/v2/x/manifests/${digest}`);
    assert.equal(passed.status, 404, 'an absolute-form request is passed through to the origin');
    const p2p = await viaTls(origin.blobUrl(digest));
    assert.equal(p2p.status, 200);
    assert.ok(p2p.body.equals(blob), 'a blob GET over the TLS port arrives whole');

    assert.notEqual(df.peerPort, df.port, 'peers, which speak plain HTTP, get their own port');
    const peer = await request(`http://${ip}:${df.peerPort}/peer/file/${'f'.repeat(64)}`, { headers: { range: 'bytes=0-9', pieceNum: '0', pieceSize: String(4 * MiB) } });
    await peer.body.dump();
    assert.equal(peer.statusCode, 404);
  });

  describe('ratelimit against dfget_flags', () => {
    let sn: Supernode;
    before(async () => {
      sn = await supernodeAt(dir, '127.0.0.71');
    });
    after(() => sn.close());

    it('ratelimit decides a download\'s and the uploads\' rate over -s and --totallimit, and says so', async () => {
      const file = join(dir, 'rate.yml');
      const flags = JSON.stringify(['--node', `127.0.0.71:${sn.apiPort}`, '-s', '1M', '--totallimit', '1M']);
      await writeFile(file, `port: 0\nworkHome: ${join(dir, 'df-rate')}\nratelimit: 50M\ndfget_flags: ${flags}\nproxies:\n  - regx: blobs/sha256.*\n`);
      const lines: string[] = [];
      const log = pino({ level: 'warn' }, new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }));
      const df = await startDfdaemon(loadDfdaemonConfig({ file, defaultFile: null }), { host: '127.0.0.72', log });
      daemons.push(df);
      assert.equal(lines.filter((l) => /ratelimit overrides/.test(l)).length, 1, lines.join(''));

      const digest = origin.add(randomBlob(4 * MiB));
      const t0 = performance.now();
      const r = await getViaProxy('127.0.0.72', df.port, origin.blobUrl(digest));
      const downMs = performance.now() - t0;
      assert.equal(r.sha256, digest);
      // At -s 1M these 4 MiB would take about 4 s.
      assert.ok(downMs < 2_000, `4 MiB took ${downMs.toFixed(0)} ms`);

      const [tf] = [...df.store.all()];
      const t1 = performance.now();
      let served = 0;
      for (let n = 0; n < tf.layout.count; n++) {
        const p = tf.layout.piece(n);
        const res = await request(`http://127.0.0.72:${df.peerPort}${df.piecePath(tf.taskId)}`, {
          headers: { range: `bytes=${p.start}-${p.end}`, pieceNum: String(n), pieceSize: String(tf.layout.pieceSize) },
        });
        assert.equal(res.statusCode, 206);
        served += (await res.body.arrayBuffer()).byteLength;
      }
      const upMs = performance.now() - t1;
      assert.ok(served >= 4 * MiB);
      // At --totallimit 1M the uploads would take about 4 s.
      assert.ok(upMs < 2_000, `uploading ${served} bytes took ${upMs.toFixed(0)} ms`);
    });
  });

  it('answers 502, not 504, when the upstream closes without answering', async () => {
    for (const how of ['after reading the request', 'at once']) {
      const upstream = createNetServer((s) => {
        s.on('error', () => undefined);
        if (how === 'at once') return void s.destroy();
        s.once('data', () => s.end());
      });
      servers.push(upstream);
      const upPort = await listenNet(upstream);
      const df = await plain();
      const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpRequest({ host: HOST, port: df.port, path: `http://${HOST}:${upPort}/v2/`, headers: { host: `${HOST}:${upPort}` } }, (r) => {
          let body = '';
          r.setEncoding('utf8');
          r.on('data', (c) => (body += c));
          r.once('end', () => resolve({ status: r.statusCode ?? 0, body }));
        });
        req.once('error', reject);
        req.end();
      });
      assert.equal(res.status, 502, `${how}: ${res.body}`);
      assert.match(res.body, /SOURCE_UNREACHABLE/);
    }
  });
});
