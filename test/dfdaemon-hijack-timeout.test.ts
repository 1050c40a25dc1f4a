// A hijacked CONNECT must not hold its socket forever: a client that stalls before the TLS
// handshake, or in a request head, is cut; a response that keeps flowing is not.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { ProxyAgent, request } from 'undici';
import { genCa } from '../dfdaemon/cli/gen-ca.js';
import { createHijacker } from '../dfdaemon/proxy/hijack.js';
import { HijackCerts } from '../dfdaemon/proxy/hijack-certs.js';
import { parseAuthority } from '../dfdaemon/proxy/upstream-tls.js';
import { createLogger } from '../shared/log/index.js';

const quiet = createLogger('test', { level: 'silent' });
const host = '127.0.0.1';
const target = 'registry.test:443';
const handshakeMs = 300;
const headMs = 300;
/** Far above the timeouts, so a slow machine does not fail the test; far below "never". */
const bound = 3_000;

/** CONNECT through the proxy and hand back the raw socket once the 200 arrived. */
function connectThrough(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host, port, method: 'CONNECT', path: target });
    req.once('error', reject);
    req.once('connect', (res, socket) => {
      if (res.statusCode !== 200) return reject(new Error(`CONNECT answered ${res.statusCode}`));
      resolve(socket);
    });
    req.end();
  });
}

function tlsThrough(port: number, ca: string): Promise<TLSSocket> {
  return connectThrough(port).then(
    (socket) =>
      new Promise((resolve, reject) => {
        const t = tlsConnect({ socket, ca, servername: 'registry.test' }, () => resolve(t));
        t.once('error', reject);
      }),
  );
}

/** Resolves with how long the proxy took to close `s`; rejects if it is still open after `ms`. */
function closedWithin(s: Socket, ms: number): Promise<number> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    if (s.destroyed) return resolve(0);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`the proxy left the socket open for ${ms} ms`));
    }, ms);
    s.on('error', () => undefined);
    s.resume();
    s.once('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - start);
    });
  });
}

/** One request on an open TLS socket; resolves with the raw answer once its body is complete. */
function exchange(t: TLSSocket, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (c: Buffer) => {
      got += c.toString('utf8');
      const m = /content-length: (\d+)\r\n[\s\S]*?\r\n\r\n([\s\S]*)$/i.exec(got);
      if (m && Buffer.byteLength(m[2]) >= Number(m[1])) {
        t.off('data', onData);
        t.off('close', onClose);
        resolve(got);
      }
    };
    const onClose = () => reject(new Error(`closed mid-answer; got ${JSON.stringify(got)}`));
    t.on('data', onData);
    t.once('close', onClose);
    t.write(`GET ${path} HTTP/1.1\r\nHost: registry.test\r\n\r\n`);
  });
}

describe('hijacked connection timeouts', () => {
  let dir: string;
  let caPem: string;
  let proxy: Server;
  let port: number;
  const slowChunks = 8;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-hjt-'));
    const ca = await genCa({ out: dir, cn: 'hijack timeout CA', days: 2 });
    caPem = await readFile(ca.certFile, 'utf8');
    const certs = new HijackCerts(caPem, await readFile(ca.keyFile, 'utf8'), quiet);
    const hijack = createHijacker(
      certs,
      (req, res) => {
        if (req.url !== '/slow') return void res.writeHead(200, { 'content-length': 2 }).end('ok');
        // Trickles for longer than either timeout: a transfer in progress, not an idle client.
        res.writeHead(200, { 'content-length': slowChunks });
        let sent = 0;
        const tick = setInterval(() => {
          res.write('x');
          if (++sent === slowChunks) {
            clearInterval(tick);
            res.end();
          }
        }, 100);
        res.once('close', () => clearInterval(tick));
      },
      quiet,
      { handshakeMs, headMs },
    );
    // The proxy's CONNECT wiring (server.ts), with every target hijacked.
    proxy = createServer((_req, res) => void res.writeHead(405).end());
    proxy.on('connect', (req, socket, head) => {
      socket.on('error', () => socket.destroy());
      const t = parseAuthority(req.url ?? '')!;
      void hijack(socket, head, { ...t, rule: { regx: /./, insecure: false, ca: [] } });
    });
    await new Promise<void>((r) => proxy.listen(0, host, () => r()));
    port = (proxy.address() as AddressInfo).port;
  });

  after(async () => {
    proxy?.closeAllConnections();
    await new Promise((r) => proxy?.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it('closes a CONNECT that never starts its TLS handshake', async () => {
    const socket = await connectThrough(port);
    const took = await closedWithin(socket, bound);
    assert.ok(took >= handshakeMs - 50, `closed after ${took} ms, before the handshake timeout`);
  });

  it('closes a hijacked connection that sends nothing after the handshake', async () => {
    const t = await tlsThrough(port, caPem);
    await closedWithin(t, bound);
  });

  it('closes a hijacked connection whose request head never ends', async () => {
    const t = await tlsThrough(port, caPem);
    t.write('GET /v2/ HTTP/1.1\r\nHost: registry.test\r\n');
    await closedWithin(t, bound);
  });

  it('closes a kept-alive connection whose next request head never ends', async () => {
    const t = await tlsThrough(port, caPem);
    assert.match(await exchange(t, '/'), /^HTTP\/1\.1 200 [\s\S]*\r\n\r\nok$/);
    // Bytes of a new request stop the keep-alive timer; only the head bound is left.
    t.write('GET /v2/ HTTP/1.1\r\nHost: registry.test\r\n');
    await closedWithin(t, bound);
  });

  it('serves requests, and does not cut a response that keeps flowing past the timeouts', async () => {
    const t = await tlsThrough(port, caPem);
    const slow = await exchange(t, '/slow');
    assert.match(slow, new RegExp(`\\r\\n\\r\\n${'x'.repeat(slowChunks)}$`));
    assert.match(await exchange(t, '/'), /\r\n\r\nok$/, 'the connection is still usable');
    t.destroy();

    const agent = new ProxyAgent({ uri: `http://${host}:${port}`, requestTls: { ca: caPem } });
    try {
      const res = await request(`https://${target}/v2/`, { dispatcher: agent });
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), 'ok');
    } finally {
      await agent.close();
    }
  });
});
