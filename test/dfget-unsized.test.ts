// dfget from an origin that does not say the length (chunked), and with a Range header of its
// own that the origin answers with 206: stock dfget's back-source copies whatever body comes.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Supernode } from '../supernode/server.js';
import { dfdaemonAt, metric, supernodeAt } from './helpers/cluster.js';
import { getViaProxy } from './helpers/proxy-get.js';
import { REPO_ROOT } from './helpers/e2e.js';
import { randomBlob } from './helpers/origin.js';

function dfget(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(join(REPO_ROOT, 'bin', 'dfget'), args, { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

describe('dfget with an origin that sends no Content-Length, or a 206 to its own Range', () => {
  let dir: string;
  let origin: Server;
  let base: string;
  let sn: Supernode;
  const files = new Map<string, Buffer>([
    ['/big', randomBlob(3 * 1024 * 1024 + 5)],
    ['/one', Buffer.from('x')],
    ['/empty', Buffer.alloc(0)],
  ]);
  const layer = randomBlob(700_000);
  const layerDigest = createHash('sha256').update(layer).digest('hex');
  files.set(`/v2/library/x/blobs/sha256:${layerDigest}`, layer);
  const gets: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-unsized-'));
    origin = createServer((req, res) => {
      const data = files.get(req.url ?? '');
      if (!data) return void res.writeHead(404).end();
      if (req.method === 'HEAD') return void res.writeHead(200, { 'transfer-encoding': 'chunked' }).end();
      gets.push(`${req.url} ${req.headers.range ?? ''}`);
      const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      if (m) {
        const start = Number(m[1]);
        const end = m[2] ? Math.min(Number(m[2]), data.length - 1) : data.length - 1;
        return void res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${data.length}`, 'content-length': end - start + 1 }).end(data.subarray(start, end + 1));
      }
      // Chunked, in several writes: no length anywhere.
      res.writeHead(200, { 'transfer-encoding': 'chunked' });
      for (let off = 0; off < data.length; off += 256 * 1024) res.write(data.subarray(off, off + 256 * 1024));
      res.end();
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
    sn = await supernodeAt(dir, '127.0.0.1');
  });
  after(async () => {
    await sn.close();
    origin.closeAllConnections();
    await new Promise((r) => origin.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  for (const [path, pattern] of [['/big', 'source'], ['/big', 'p2p'], ['/one', 'source'], ['/empty', 'source'], ['/empty', 'p2p']] as const) {
    it(`${path} with -p ${pattern}`, async () => {
      const out = join(dir, `out-${path.slice(1)}-${pattern}`);
      const r = await dfget(['-u', base + path, '-o', out, '-p', pattern, '--node', `127.0.0.1:${sn.apiPort}`, '--ip', '127.0.0.10', '--home', dir]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(md5(readFileSync(out)), md5(files.get(path)!));
      assert.match(r.stdout, /download SUCCESS/);
    });
  }

  it('a Range header of its own, answered with 206, with -p source', async () => {
    const out = join(dir, 'out-range');
    const r = await dfget(['-u', `${base}/big`, '-o', out, '-p', 'source', '--header', 'Range: bytes=100-199', '--home', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readFileSync(out), files.get('/big')!.subarray(100, 200));
  });

  it('the dfdaemon proxy, which sends Content-Length first, passes such a blob through whole', async () => {
    const df = await dfdaemonAt(dir, '127.0.0.11', [`127.0.0.1:${sn.apiPort}`]);
    try {
      const r = await getViaProxy('127.0.0.11', df.port, `${base}/v2/library/x/blobs/sha256:${layerDigest}`);
      assert.equal(r.status, 200);
      assert.ok(r.complete);
      assert.equal(r.sha256, layerDigest);
      assert.equal(metric(await df.metrics.registry.metrics(), 'dfdaemon_requests_total', { route: 'direct' }), 1);
    } finally {
      await df.close();
    }
  });

  it('leaves no work files behind', async () => {
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith('dfget-')), []);
  });
});
