// An origin that breaks on purpose: each blob GET takes the next fault from a queue (reset
// after N bytes, stall after N bytes, answer a status, or wait for a gate), then serves the
// blob with Range support. Every GET is logged with its Range, status and the bytes sent.
import { createHash } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault =
  | { kind: 'reset'; after: number }
  | { kind: 'stall'; after: number }
  | { kind: 'status'; status: number; retryAfter?: string }
  /** Answer only once `open` resolves (a request held while a test looks around). */
  | { kind: 'gate'; open: Promise<void> };

export interface FaultOrigin {
  url: string;
  faults: Fault[];
  /** Serve without a Content-Length (chunked), so the length is unknown until the end. */
  chunked: boolean;
  log: { range: string; status: number; bytes: number }[];
  add(data: Buffer): string;
  blobUrl(digest: string): string;
  close(): Promise<void>;
}

const CHUNK = 64 * 1024;

export async function startFaultOrigin(): Promise<FaultOrigin> {
  const blobs = new Map<string, Buffer>();
  let server!: Server;
  const o: FaultOrigin = {
    url: '',
    faults: [],
    chunked: false,
    log: [],
    add(data) {
      const d = createHash('sha256').update(data).digest('hex');
      blobs.set(d, data);
      return d;
    },
    blobUrl: (d) => `${o.url}/v2/t/blobs/sha256:${d}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
  server = createServer((req, res) => {
    const m = /\/blobs\/sha256:([0-9a-f]{64})$/.exec(req.url ?? '');
    const data = m && blobs.get(m[1]);
    if (!data) return void res.writeHead(404).end();
    const entry = { range: req.headers.range ?? '', status: 0, bytes: 0 };
    o.log.push(entry);
    const fault = o.faults.shift();
    const serve = () => {
      if (fault?.kind === 'status') {
        entry.status = fault.status;
        return void res.writeHead(fault.status, fault.retryAfter ? { 'retry-after': fault.retryAfter } : {}).end('busy');
      }
      const r = /^bytes=(\d+)-$/.exec(entry.range);
      const start = r ? Number(r[1]) : 0;
      entry.status = r ? 206 : 200;
      res.writeHead(entry.status, {
        ...(o.chunked ? {} : { 'content-length': data.length - start }),
        ...(r ? { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
      });
      const cut = fault?.kind === 'reset' || fault?.kind === 'stall' ? fault.after : Infinity;
      send(res, data.subarray(start), cut, (n) => (entry.bytes += n), () => {
        // An RST drops what the client has not read yet: give it a moment to read what was sent.
        if (fault?.kind === 'reset') setTimeout(() => res.socket?.resetAndDestroy(), fault.after > 0 ? 150 : 0);
        // A stall holds the connection open and sends nothing more.
      });
    };
    if (fault?.kind === 'gate') void fault.open.then(serve);
    else serve();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  o.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return o;
}

/** Write body in chunks with backpressure, stopping after `cut` bytes (then calling onCut). */
function send(res: ServerResponse, body: Buffer, cut: number, count: (n: number) => void, onCut: () => void): void {
  let off = 0;
  const step = () => {
    while (!res.destroyed) {
      if (off >= Math.min(cut, body.length)) {
        if (off >= cut) return onCut();
        return void res.end();
      }
      const chunk = body.subarray(off, Math.min(off + CHUNK, cut, body.length));
      off += chunk.length;
      count(chunk.length);
      if (!res.write(chunk)) return void res.once('drain', step);
    }
  };
  step();
}
