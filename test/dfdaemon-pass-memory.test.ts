// Uploads through the proxy (docker push) are bytes dfdaemon only passes along, in the same
// 100 MB cgroup as its pulls: they must not grow the real process's memory as they go.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, request, type ClientRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startBinOnFreePort, type Daemon } from './helpers/e2e.js';
import { tmpDir, type TmpDir } from './fixtures/proc.js';

const HOST = '127.0.0.1';
const MiB = 1024 * 1024;
const EACH = 160 * MiB;
const chunk = Buffer.alloc(MiB, 0x5a);

function vmHwmMB(pid: number): number {
  return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

/** Writes EACH bytes into req with backpressure, and resolves with the answer's status and x-got. */
async function upload(req: ClientRequest): Promise<{ status: number; got: number }> {
  const answer = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  for (let sent = 0; sent < EACH; sent += chunk.length) {
    if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
  }
  req.end();
  const res = await answer;
  res.resume();
  return { status: res.statusCode ?? 0, got: Number(res.headers['x-got']) };
}

describe('uploads through dfdaemon (real process)', () => {
  let tmp: TmpDir;
  let sink: Server;
  let sinkPort: number;
  let df: Daemon;

  before(async () => {
    tmp = await tmpDir('dfts-passmem-');
    sink = createServer((req, res) => {
      let got = 0;
      req.on('data', (c: Buffer) => (got += c.length));
      req.on('end', () => res.writeHead(201, { 'x-got': String(got), 'content-length': 0 }).end());
    });
    await new Promise<void>((r) => sink.listen(0, HOST, r));
    sinkPort = (sink.address() as AddressInfo).port;
    const cfg = join(tmp.path, 'dfdaemon.yml');
    await writeFile(cfg, `workHome: ${join(tmp.path, 'df')}\nproxies:\n  - regx: blobs/sha256.*\n`);
    df = await startBinOnFreePort('dfdaemon', HOST, (port) => ['--config', cfg, '--port', String(port), '--node', `${HOST}:1`], { HOME: tmp.path });
  });

  after(async () => {
    await df?.stop();
    await new Promise((r) => sink?.close(r));
    await tmp?.cleanup();
  });

  it('passes 8 concurrent 160 MiB uploads (4 proxied, 4 through CONNECT) without its peak RSS growing past 90 MB', async () => {
    const before = vmHwmMB(df.proc.pid);
    const proxied = Array.from({ length: 4 }, (_, i) =>
      upload(request({ host: HOST, port: df.port, method: 'PUT', path: `http://${HOST}:${sinkPort}/v2/x/blobs/uploads/p${i}`, headers: { host: `${HOST}:${sinkPort}`, 'content-length': EACH } })),
    );
    const tunnelled = Array.from({ length: 4 }, async (_, i) => {
      const socket = await new Promise<Socket>((resolve, reject) => {
        const c = request({ host: HOST, port: df.port, method: 'CONNECT', path: `${HOST}:${sinkPort}` });
        c.once('connect', (res, s) => (res.statusCode === 200 ? resolve(s) : reject(new Error(`CONNECT ${res.statusCode}`))));
        c.once('error', reject);
        c.end();
      });
      return upload(request({ createConnection: () => socket, host: HOST, port: sinkPort, method: 'PUT', path: `/v2/x/blobs/uploads/t${i}`, headers: { 'content-length': EACH } }));
    });
    const results = await Promise.all([...proxied, ...tunnelled]);
    for (const r of results) assert.deepEqual(r, { status: 201, got: EACH });
    const peak = vmHwmMB(df.proc.pid);
    // Measured: 61 MB at rest, 77 MB after these uploads, 126 MB when nothing counted
    // their socket buffers towards a scavenge.
    assert.ok(peak < 90, `dfdaemon peaked at ${peak.toFixed(1)} MB (${before.toFixed(1)} MB before the uploads)`);
  });
});
