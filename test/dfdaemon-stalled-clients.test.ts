// The proxy port is reachable by every peer and runs in a 100 MB cgroup: clients that stall
// (stop reading a blob, never send a ClientHello, never send a request, leave a tunnel silent)
// must be cut and must not be able to grow memory, while a normal client still gets its bytes.
// Logs must not leak signed URLs, and a client's cancel is not a peer failure.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { connect, createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { genCa } from '../dfdaemon/cli/gen-ca.js';
import { startDfdaemon, type Dfdaemon } from '../dfdaemon/daemon.js';
import type { ProxyLimits } from '../dfdaemon/proxy/limits.js';
import { loadDfdaemonConfig } from '../shared/config/dfdaemon.js';
import { createLogger } from '../shared/log/index.js';
import { metric } from './helpers/cluster.js';
import { createCa, type TestCa } from './fixtures/tls.js';
import { startFakeStock, type FakeStock } from './helpers/peer-fake-stock.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { getViaProxy, tlsViaProxy, hijackYaml } from './helpers/proxy-get.js';
import { originHandler, serveTls } from './helpers/tls-server.js';

const HOST = '127.0.0.1';
const MiB = 1024 * 1024;
const PIECE = MiB;
/** Far above the injected timeouts, so a slow machine does not fail a test; far below the defaults. */
const BOUND = 5_000;
const LIMITS: Partial<ProxyLimits> = {
  blobIdleMs: 1_000,
  blobBufferBytes: 6 * MiB,
  handshakeMs: 300,
  maxHandshakes: 4,
  tunnelIdleMs: 500,
  headersTimeoutMs: 400,
  checkIntervalMs: 100,
};

/** Resolves with ms until the other side closed `s`; rejects if it is still open after `ms`. */
function closedWithin(s: Socket, ms: number): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    if (s.destroyed) return resolve(0);
    const timer = setTimeout(() => reject(new Error(`the dfdaemon left the socket open for ${ms} ms`)), ms);
    s.on('error', () => undefined);
    s.once('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    });
  });
}

/**
 * Resume a stalled socket and read what it still gets: resolves with the byte count once the
 * dfdaemon has closed it. A socket that was not cut reads the whole body and stays open.
 */
function readRest(s: Socket, ms: number): Promise<number> {
  let bytes = 0;
  s.on('data', (c: Buffer) => (bytes += c.length));
  s.resume();
  return closedWithin(s, ms).then(() => bytes, (err: Error) => Promise.reject(new Error(`${err.message} (read ${bytes} bytes)`)));
}

/** Poll until `cond` holds, or fail after `ms`. */
async function until(what: string, cond: () => Promise<boolean> | boolean, ms = BOUND): Promise<void> {
  for (const end = Date.now() + ms; !(await cond()); await sleep(50)) if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
}

function rawConnect(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: HOST, port }, () => resolve(s));
    s.once('error', reject);
  });
}

/** CONNECT `target` on a raw socket; resolves with the status line's code and the socket. */
async function rawConnectTo(port: number, target: string): Promise<{ status: number; socket: Socket }> {
  const s = await rawConnect(port);
  s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (c: Buffer) => {
      got += c.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      s.pause();
      resolve({ status: Number(got.split(' ')[1]), socket: s });
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error(`closed before answering: ${JSON.stringify(got)}`)));
  });
}

describe('dfdaemon and clients that stall', () => {
  let dir: string;
  let origin: Origin;
  let originCa: TestCa;
  let https: HttpsServer;
  let httpsPort: number;
  let fake: FakeStock;
  let dfCa: string;
  let df: Dfdaemon;
  let silentUpstream: TcpServer;
  const lines: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-stall-'));
    origin = await startOrigin(HOST);
    originCa = await createCa({ commonName: 'origin CA' });
    const served = await serveTls(originCa, HOST, originHandler(origin), { name: 'origin' });
    ({ server: https, port: httpsPort } = served);
    // A CONNECT target that accepts and never says a word (a blind tunnel's upstream).
    silentUpstream = createTcpServer((s) => s.on('error', () => undefined));
    await new Promise<void>((r) => silentUpstream.listen(0, HOST, () => r()));
    fake = await startFakeStock({ pieceSize: PIECE, downLimit: 4 });
    const ca = await genCa({ out: join(dir, 'keys'), cn: 'df CA', days: 2 });
    dfCa = await readFile(ca.certFile, 'utf8');
    const home = join(dir, 'df');
    await mkdir(home);
    const file = join(home, 'dfdaemon.yml');
    await writeFile(
      file,
      [
        'port: 0',
        `workHome: ${home}`,
        `dfget_flags: ["--node", "${fake.node}"]`,
        'proxies:',
        '  - regx: blobs/sha256.*',
        ...hijackYaml(ca, [{ regx: `${HOST.replace(/\./g, '\\.')}:${httpsPort}`, certs: [served.leaf.chainFile] }, { regx: 'silent\\.test' }]),
        '',
      ].join('\n'),
    );
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        cb();
      },
    });
    const log = pino({ level: 'debug' }, sink);
    df = await startDfdaemon(loadDfdaemonConfig({ file, defaultFile: null }), { host: HOST, log, proxyLimits: LIMITS });
  });
  after(async () => {
    await df?.close();
    await fake.close();
    https.closeAllConnections();
    await new Promise((r) => https.close(r));
    silentUpstream.close();
    await origin.close();
    await originCa.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  /** A blob the fake CDN serves for `url` (the origin's HEAD says it may be pulled). */
  const blobAt = (size: number, url: (digest: string) => string) => {
    const blob = randomBlob(size);
    const digest = origin.add(blob);
    const u = url(digest);
    fake.blobs.set(u, blob);
    return { blob, digest, url: u };
  };
  const metrics = async () => (await fetch(`http://${HOST}:${df.port}/metrics`)).text();

  it('cuts clients that stop reading a blob, within a bounded pool, while a normal client completes', async () => {
    const { digest, url } = blobAt(16 * MiB - 7, (d) => origin.blobUrl(d));
    const first = await getViaProxy(HOST, df.port, url);
    assert.equal(first.sha256, digest, 'cached through P2P');
    const failures = metric(await metrics(), 'dfdaemon_blob_failures_total', { reason: 'client' });
    const served = metric(await metrics(), 'dfdaemon_blobs_total');

    const N = 20;
    global.gc?.();
    const before = process.memoryUsage().arrayBuffers;
    const stalled = await Promise.all(
      Array.from({ length: N }, async () => {
        const s = await rawConnect(df.port);
        s.pause();
        s.write(`GET ${url} HTTP/1.1\r\nHost: ${new URL(url).host}\r\n\r\n`);
        return s;
      }),
    );
    await sleep(250);
    const held = process.memoryUsage().arrayBuffers - before;
    // Without a shared pool each of them held 3 MiB (60 MiB here).
    assert.ok(held < 6 * MiB + 6 * MiB, `${(held / MiB).toFixed(1)} MiB of buffers held by ${N} stalled clients`);

    const normal = await getViaProxy(HOST, df.port, url);
    assert.equal(normal.status, 200);
    assert.ok(normal.complete);
    assert.equal(normal.sha256, digest, 'a normal client gets the whole blob meanwhile');

    const cut = async () => metric(await metrics(), 'dfdaemon_blob_failures_total', { reason: 'client' }) - failures;
    await until('every stalled client cut', async () => (await cut()) >= N);
    assert.equal(await cut(), N, 'each cut counted as a client failure');
    assert.equal(metric(await metrics(), 'dfdaemon_blobs_total') - served, 1, 'only the normal client counted as served');
    for (const got of await Promise.all(stalled.map((s) => readRest(s, BOUND)))) assert.ok(got < 16 * MiB, `a cut client read ${got} bytes`);
    assert.ok(lines.some((l) => l.includes('client stopped reading')), 'the cut is logged as the client stalling');
  });

  it('does not cut a slow client that keeps reading', async () => {
    const { blob, digest, url } = blobAt(12 * MiB, (d) => origin.blobUrl(d));
    assert.equal((await getViaProxy(HOST, df.port, url)).sha256, digest);
    const s = await rawConnect(df.port);
    s.write(`GET ${url} HTTP/1.1\r\nHost: ${new URL(url).host}\r\n\r\n`);
    const h = createHash('sha256');
    let head = '';
    let bytes = 0;
    const t0 = Date.now();
    await new Promise<void>((resolve, reject) => {
      s.on('data', (c: Buffer) => {
        if (bytes === 0 && !head.includes('\r\n\r\n')) {
          head += c.toString('latin1');
          const end = head.indexOf('\r\n\r\n');
          if (end < 0) return;
          c = Buffer.from(head.slice(end + 4), 'latin1');
          head = head.slice(0, end);
        }
        h.update(c);
        bytes += c.length;
        if (bytes >= blob.length) return resolve();
        // About 4 MB/s: the body takes several idle periods to go through. (Much slower, and the
        // kernel's send buffer wakes the writer less often than once an idle period here.)
        s.pause();
        setTimeout(() => s.resume(), 15);
      });
      s.once('close', () => reject(new Error(`cut after ${bytes} bytes, ${Date.now() - t0} ms; ${lines.filter((l) => l.includes('blob')).slice(-2).join(' ')}`)));
    });
    s.destroy();
    assert.match(head, /^HTTP\/1\.1 200/);
    assert.equal(h.digest('hex'), digest);
    assert.ok(Date.now() - t0 > 2 * (LIMITS.blobIdleMs ?? 0), `the read took ${Date.now() - t0} ms, more than two idle periods`);
  });

  it('cuts a client that stops reading a blob inside a hijacked TLS tunnel', async () => {
    const { digest, url } = blobAt(16 * MiB - 3, (d) => `https://${HOST}:${httpsPort}/v2/library/t/blobs/sha256:${d}`);
    const t = await tlsViaProxy(HOST, df.port, `${HOST}:${httpsPort}`, dfCa);
    const h = createHash('sha256');
    let bytes = 0;
    let head = '';
    const done = new Promise<void>((resolve) => {
      t.on('data', (c: Buffer) => {
        if (!head.includes('\r\n\r\n')) {
          head += c.toString('latin1');
          const end = head.indexOf('\r\n\r\n');
          if (end < 0) return;
          c = Buffer.from(head.slice(end + 4), 'latin1');
        }
        h.update(c);
        bytes += c.length;
        if (bytes >= 16 * MiB - 3) resolve();
      });
    });
    t.write(`GET ${new URL(url).pathname} HTTP/1.1\r\nHost: ${HOST}:${httpsPort}\r\n\r\n`);
    await done;
    assert.equal(h.digest('hex'), digest, 'a reading client gets it');
    // Keep-alive: the same tunnel asks again and stops reading.
    const failures = metric(await metrics(), 'dfdaemon_blob_failures_total', { reason: 'client' });
    t.pause();
    t.removeAllListeners('data');
    t.write(`GET ${new URL(url).pathname} HTTP/1.1\r\nHost: ${HOST}:${httpsPort}\r\n\r\n`);
    await until(`the stalled TLS client cut (${lines.filter((l) => l.includes('blob')).slice(-1).join('')})`, async () => metric(await metrics(), 'dfdaemon_blob_failures_total', { reason: 'client' }) > failures);
    assert.ok((await readRest(t, BOUND)) < 16 * MiB, 'cut short');
  });

  it('closes silent hijacked CONNECTs after the handshake timeout and refuses those past the cap with 503', async () => {
    const max = LIMITS.maxHandshakes!;
    const silent = [];
    for (let i = 0; i < max; i++) {
      const r = await rawConnectTo(df.port, `silent.test:443`);
      assert.equal(r.status, 200);
      silent.push(r.socket);
    }
    const over = await rawConnectTo(df.port, 'silent.test:443');
    assert.equal(over.status, 503, 'past the cap of CONNECTs in their handshake');
    over.socket.destroy();
    const took = await Promise.all(silent.map((s) => closedWithin(s, BOUND)));
    assert.ok(Math.min(...took) >= (LIMITS.handshakeMs ?? 0) - 100, `closed after ${Math.min(...took)} ms`);
    // Their slots are free again.
    const again = await rawConnectTo(df.port, 'silent.test:443');
    assert.equal(again.status, 200);
    again.socket.destroy();
  });

  it('closes a blind tunnel that stays silent, and keeps one that carries bytes', async () => {
    const target = `${HOST}:${(silentUpstream.address() as AddressInfo).port}`;
    const idle = await rawConnectTo(df.port, target);
    assert.equal(idle.status, 200);
    const busy = await rawConnectTo(df.port, target);
    assert.equal(busy.status, 200);
    busy.socket.on('error', () => undefined);
    const tick = setInterval(() => busy.socket.write('x'), 100);
    try {
      await closedWithin(idle.socket, BOUND);
      await sleep(3 * (LIMITS.tunnelIdleMs ?? 0));
      assert.ok(!busy.socket.destroyed, 'a tunnel with traffic stays open past the idle time');
    } finally {
      clearInterval(tick);
      busy.socket.destroy();
    }
  });

  it('closes a connection that sends no request head in time', async () => {
    const s = await rawConnect(df.port);
    const took = await closedWithin(s, BOUND);
    assert.ok(took >= (LIMITS.headersTimeoutMs ?? 0) - 100, `closed after ${took} ms`);
  });

  it('logs no URL credentials or signatures, and a client cancel as the client hanging up', async () => {
    const secretQuery = '?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=SECRETSIG';
    const port = new URL(origin.url).port;
    // Refused by the registry (an unknown digest): logged at info before passing through.
    const unknown = `http://user:pa55word@${HOST}:${port}/v2/p/a/blobs/sha256:${'1'.repeat(64)}${secretQuery}`;
    assert.equal((await getViaProxy(HOST, df.port, unknown)).status, 404);
    // The CDN does not know it: P2P unavailable, logged at warn.
    const stray = origin.blobUrl(origin.add(randomBlob(1000))) + secretQuery;
    assert.equal((await getViaProxy(HOST, df.port, stray)).status, 200);
    // A client that cancels mid-blob.
    const { url } = blobAt(16 * MiB, (d) => origin.blobUrl(d) + secretQuery);
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest({ host: HOST, port: df.port, path: url, headers: { host: new URL(url).host } }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.once('error', () => undefined);
      req.once('close', () => resolve());
      setTimeout(() => reject(new Error('no body')), BOUND).unref();
      req.end();
    });
    const deadline = Date.now() + BOUND;
    while (!lines.some((l) => l.includes('client hung up')) && Date.now() < deadline) await sleep(20);
    const all = lines.join('\n');
    for (const secret of ['SECRETSIG', 'AKIAEXAMPLE', 'pa55word']) assert.ok(!all.includes(secret), `${secret} in the logs`);
    const hungUp = lines.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.msg.includes('client hung up'));
    assert.ok(hungUp.length >= 1, 'the cancel is logged as the client hanging up');
    assert.ok(hungUp.every((l) => l.level === 30), 'at info');
    assert.ok(!all.includes('the peer hung up'), 'not as a peer hanging up');
    assert.ok(all.includes('registry refused this client') && all.includes('p2p unavailable'), 'the URL-bearing lines were logged');
  });
});

describe('dfdaemon connection cap', () => {
  let dir: string;
  let df: Dfdaemon;
  const max = 8;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-cap-'));
    const file = join(dir, 'dfdaemon.yml');
    await writeFile(file, `port: 0\nworkHome: ${join(dir, 'df')}\ndfget_flags: ["--node", "127.0.0.1:1"]\n`);
    const log = createLogger('test', { level: 'silent' });
    df = await startDfdaemon(loadDfdaemonConfig({ file, defaultFile: null }), { host: HOST, log, proxyLimits: { maxConnections: max } });
  });
  after(async () => {
    await df?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('closes connections past maxConnections at once, and accepts again once some close', async () => {
    const held = await Promise.all(Array.from({ length: max }, () => rawConnect(df.port)));
    await sleep(100);
    const extra = await rawConnect(df.port).catch(() => undefined);
    if (extra) await closedWithin(extra, 1_000);
    for (const s of held) assert.ok(!s.destroyed, 'the first ones are kept');
    held.pop()!.destroy();
    await sleep(100);
    const res = await fetch(`http://${HOST}:${df.port}/_ping`);
    assert.equal((await res.text()).trim(), 'OK');
    for (const s of held) s.destroy();
  });
});
