// A tiny origin that serves blobs by digest and counts what it sent: a stand-in for tests that
// exercise our protocol logic; the end-to-end tests use Debian's docker-registry instead.
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Origin {
  url: string;
  server: Server;
  blobs: Map<string, Buffer>;
  served: Map<string, number>;
  requests: Map<string, number>;
  /** Every blob request: the Range asked for ('' for none) and the bytes sent. */
  log: { digest: string; range: string; bytes: number }[];
  /** Bytes per second each response is throttled to (0 = unthrottled). */
  rate: number;
  add(data: Buffer): string;
  blobUrl(digest: string): string;
  close(): Promise<void>;
}

export async function startOrigin(host = '127.0.0.1'): Promise<Origin> {
  const log: Origin['log'] = [];
  const blobs = new Map<string, Buffer>();
  const served = new Map<string, number>();
  const requests = new Map<string, number>();
  const server = createServer((req, res) => {
    const m = /\/blobs\/sha256:([0-9a-f]{64})/.exec(req.url ?? '');
    const data = m ? blobs.get(m[1]) : undefined;
    if (!m || !data) return void res.writeHead(404).end('not found');
    // A HEAD (dfdaemon asking whether a client may pull) moves no blob bytes: not counted.
    if (req.method === 'HEAD') return void res.writeHead(200, { 'content-length': data.length }).end();
    requests.set(m[1], (requests.get(m[1]) ?? 0) + 1);
    let start = 0;
    let end = data.length - 1;
    const r = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (r) {
      start = Number(r[1]);
      if (r[2]) end = Math.min(end, Number(r[2]));
    }
    const body = data.subarray(start, end + 1);
    res.writeHead(r ? 206 : 200, {
      'content-length': body.length,
      ...(r ? { 'content-range': `bytes ${start}-${end}/${data.length}` } : {}),
    });
    const entry = { digest: m[1], range: req.headers.range ?? '', bytes: 0 };
    log.push(entry);
    const count = (n: number) => {
      entry.bytes += n;
      served.set(m[1], (served.get(m[1]) ?? 0) + n);
    };
    if (!origin.rate) {
      res.end(body);
      count(body.length);
      return;
    }
    // Throttled: 64 KiB every 64 KiB/rate seconds, so a test can stop a download half-way.
    let off = 0;
    const step = 64 * 1024;
    const tick = () => {
      if (res.destroyed) return;
      if (off >= body.length) return void res.end();
      const chunk = body.subarray(off, off + step);
      off += chunk.length;
      count(chunk.length);
      // Honour backpressure, so `served` tracks what the client actually takes.
      // A test may lift the limit (rate 0) mid-body: send the rest at full speed.
      const next = () => (origin.rate ? setTimeout(tick, (step / origin.rate) * 1000) : setImmediate(tick));
      if (res.write(chunk)) next();
      else res.once('drain', next);
    };
    tick();
  });
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  const url = `http://${host}:${(server.address() as AddressInfo).port}`;
  const origin: Origin = {
    log,
    rate: 0,
    url,
    server,
    blobs,
    served,
    requests,
    add(data) {
      const d = createHash('sha256').update(data).digest('hex');
      blobs.set(d, data);
      return d;
    },
    blobUrl: (d) => `${url}/v2/library/test/blobs/sha256:${d}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
  return origin;
}

export function randomBlob(size: number): Buffer {
  return randomBytes(size);
}
