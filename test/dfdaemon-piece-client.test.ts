// The piece client: HTTP/1.1 with Content-Length bodies over reused connections, reading into
// one fixed buffer per connection. Raw TCP servers let each test shape the bytes on the wire.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { PieceClient, type BodySink } from '../dfdaemon/peer/piece-client.js';

const servers: Server[] = [];
after(() => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))));

/** A raw server: `reply` gets each request's head and writes whatever it likes. */
async function rawServer(reply: (sock: Socket, head: string) => void): Promise<{ port: number; connections: () => number }> {
  let connections = 0;
  const s = createServer((sock) => {
    connections++;
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      for (let i = buf.indexOf('\r\n\r\n'); i >= 0; i = buf.indexOf('\r\n\r\n')) {
        const head = buf.slice(0, i);
        buf = buf.slice(i + 4);
        reply(sock, head);
      }
    });
    sock.on('error', () => undefined);
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return { port: (s.address() as AddressInfo).port, connections: () => connections };
}

function collect(o: { slow?: boolean } = {}): BodySink & { status: number; length: number; sha: () => string; bytes: number } {
  const h = createHash('sha256');
  const sink = {
    status: 0,
    length: -1,
    bytes: 0,
    sha: () => h.digest('hex'),
    head(status: number, length: number) {
      sink.status = status;
      sink.length = length;
    },
    data(chunk: Buffer) {
      h.update(chunk);
      sink.bytes += chunk.length;
      return o.slow ? new Promise<void>((r) => setTimeout(r, 2)) : undefined;
    },
  };
  return sink;
}

const ok = (body: Buffer, extra = '') => Buffer.concat([Buffer.from(`HTTP/1.1 206 Partial Content\r\nContent-Length: ${body.length}\r\n${extra}\r\n`), body]);

describe('piece client', () => {
  const body = randomBytes(3 * 1024 * 1024 + 17);
  const digest = createHash('sha256').update(body).digest('hex');

  it('streams a body through a reused connection, with backpressure from a slow sink', async () => {
    const srv = await rawServer((sock) => sock.write(ok(body)));
    const c = new PieceClient();
    try {
      for (const slow of [false, true]) {
        const sink = collect({ slow });
        await c.get('127.0.0.1', srv.port, '/p', { Range: 'bytes=0-1' }, sink);
        assert.equal(sink.status, 206);
        assert.equal(sink.bytes, body.length);
        assert.equal(sink.sha(), digest);
      }
      assert.equal(srv.connections(), 1, 'keep-alive');
    } finally {
      c.close();
    }
  });

  it('parses a head split over reads with the body starting in the same packet', async () => {
    const srv = await rawServer((sock) => {
      const all = ok(body.subarray(0, 1000), 'X-Pad: ' + 'a'.repeat(3000) + '\r\n');
      sock.write(all.subarray(0, 20));
      setTimeout(() => sock.write(all.subarray(20, 3100)), 20);
      setTimeout(() => sock.write(all.subarray(3100)), 40);
    });
    const c = new PieceClient();
    const sink = collect();
    await c.get('127.0.0.1', srv.port, '/p', {}, sink);
    c.close();
    assert.equal(sink.bytes, 1000);
    assert.equal(sink.sha(), createHash('sha256').update(body.subarray(0, 1000)).digest('hex'));
  });

  it('tells the sink whether the source relays the piece as it arrives (x-dragonfly-relay)', async () => {
    const seen: boolean[] = [];
    const srv = await rawServer((sock, head) => sock.write(ok(body.subarray(0, 10), head.includes('/relayed') ? 'X-Dragonfly-Relay: 1\r\n' : '')));
    const c = new PieceClient();
    for (const path of ['/relayed', '/whole']) {
      const sink = collect();
      await c.get('127.0.0.1', srv.port, path, {}, { ...sink, head: (status, length, relayed) => void seen.push(relayed === true) });
    }
    c.close();
    assert.deepEqual(seen, [true, false]);
  });

  it('hands the status of a refusal without a Content-Length (chunked) to the sink', async () => {
    const srv = await rawServer((sock) => sock.write('HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nbusy\n\r\n0\r\n\r\n'));
    const c = new PieceClient();
    const seen: number[] = [];
    const sink: BodySink = {
      head(status) {
        seen.push(status);
        if (status !== 206) throw new Error(`refused with ${status}`);
      },
      data: () => undefined,
    };
    await assert.rejects(c.get('127.0.0.1', srv.port, '/p', {}, sink), /refused with 503/);
    assert.deepEqual(seen, [503]);
    c.close();
  });

  it('retries once on a new connection when the server closed the idle one', async () => {
    let n = 0;
    const srv = await rawServer((sock) => {
      sock.write(ok(Buffer.from('piece')));
      if (n++ === 0) setTimeout(() => sock.end(), 10);
    });
    const c = new PieceClient();
    await c.get('127.0.0.1', srv.port, '/p', {}, collect());
    await new Promise((r) => setTimeout(r, 50));
    const sink = collect();
    await c.get('127.0.0.1', srv.port, '/p', {}, sink);
    c.close();
    assert.equal(sink.bytes, 5);
    assert.equal(srv.connections(), 2);
  });

  it('refuses bodies it cannot frame, short bodies, and stops on abort', async () => {
    const chunked = await rawServer((sock) => sock.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'));
    const short = await rawServer((sock) => sock.end('HTTP/1.1 206 Partial Content\r\nContent-Length: 100\r\n\r\nonly this'));
    const stall = await rawServer((sock) => sock.write('HTTP/1.1 206 Partial Content\r\nContent-Length: 100\r\n\r\nsome'));
    const c = new PieceClient();
    try {
      await assert.rejects(c.get('127.0.0.1', chunked.port, '/p', {}, collect()), /unusable response head/);
      await assert.rejects(c.get('127.0.0.1', short.port, '/p', {}, collect()), /91 body bytes to come/);
      const ac = new AbortController();
      setTimeout(() => ac.abort(new Error('gave up')), 50);
      await assert.rejects(c.get('127.0.0.1', stall.port, '/p', {}, collect(), ac.signal), /gave up/);
      const refused = collect();
      refused.head = () => {
        throw new Error('not a 2xx');
      };
      await assert.rejects(c.get('127.0.0.1', stall.port, '/p', {}, refused), /not a 2xx/);
    } finally {
      c.close();
    }
  });
});
