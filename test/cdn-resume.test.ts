// A CDN fill resumed after a transient failure must go on in the layout and with the content
// its announced pieces have: an origin that ignores Range has the bytes before the resume
// dropped, and one whose content changed (If-Range, a 206 from elsewhere) fails the task
// instead of restarting under pieces peers already hold. Real origin on port 0, real Cdn.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Cdn } from '../supernode/cdn/cdn.js';
import type { CdnTask } from '../supernode/cdn/cdn-task.js';
import { dataFile } from '../supernode/cdn/paths.js';
import { ended, unwrap } from './helpers/cdn-file.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

/** The first answer: 200 with `headers`, reset after 3 MiB. */
const resetAfter3MiB = (blob: Buffer, headers: Record<string, string> = {}): Handler => (_req, res) => {
  res.writeHead(200, { 'content-length': blob.length, ...headers });
  res.write(blob.subarray(0, 3 * MiB), () => setTimeout(() => res.socket?.resetAndDestroy(), 100));
};

describe('CDN fill: a resume the origin does not answer as asked', () => {
  let dir = '';
  let handler: Handler = () => undefined;
  const seen: IncomingMessage['headers'][] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers);
    handler(req, res, seen.length);
  });
  let base = '';
  let k = 0;
  const fill = (blob: Buffer): { cdn: Cdn; home: string; t: CdnTask; announced: number[] } => {
    const home = join(dir, `home${k++}`);
    const cdn = new Cdn({ homeDir: home, failAccessIntervalMs: 1_000, now: Date.now, log: pino({ level: 'silent' }), retry: { attempts: 3, baseMs: 20, maxWaitMs: 2_000, maxTotal: 10 }, sourceIdleMs: 5_000 });
    const d = sha(blob);
    const t = cdn.ensure({ taskId: sha(Buffer.from(`${d}${k}`)), url: `${base}/v2/r/blobs/sha256:${d}`, headers: {}, insecure: false, rootCAs: [], expectSha256: d });
    const announced: number[] = [];
    t.on('piece', (num: number) => announced.push(num));
    return { cdn, home, t, announced };
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-cdn-resume-'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it('an origin that ignores Range: the bytes before the resume are dropped, announced pieces keep their records', { timeout: 20_000 }, async () => {
    seen.length = 0;
    const blob = randomBytes(8 * MiB + 123);
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const first = resetAfter3MiB(blob);
    handler = (req, res, n) => {
      if (n === 1) return first(req, res, n);
      res.writeHead(200, { 'content-length': blob.length });
      res.write(blob.subarray(0, 1000));
      void gate.then(() => res.end(blob.subarray(1000)));
    };
    const { cdn, home, t, announced } = fill(blob);
    while (seen.length < 2) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(announced.length > 0, 'pieces were announced before the reset');
    assert.deepEqual(announced.filter((p) => !t.hasPiece(p)), [], 'every announced piece keeps its record while the resume runs');
    open();
    await ended(t);
    assert.equal(t.status, 'SUCCESS', JSON.stringify(t.failure));
    assert.match(String(seen[1].range), /^bytes=\d+-$/);
    assert.deepEqual(await unwrap(dataFile(home, t.taskId), t), blob);
    assert.equal(new Set(announced).size, announced.length, 'no piece announced twice');
    assert.equal(announced.length, t.layout!.count);
    await cdn.close();
  });

  it('content that changed (If-Range with the first ETag, answered 200 with another) fails the task, no restart', { timeout: 20_000 }, async () => {
    seen.length = 0;
    const blob = randomBytes(8 * MiB + 5);
    const other = randomBytes(blob.length);
    const first = resetAfter3MiB(blob, { etag: '"v1"' });
    handler = (req, res, n) => {
      if (n === 1) return first(req, res, n);
      res.writeHead(200, { 'content-length': other.length, etag: '"v2"' }).end(other);
    };
    const { cdn, t } = fill(blob);
    await ended(t);
    assert.equal(seen[1]['if-range'], '"v1"', 'the resume names the content it continues');
    assert.equal(t.failure?.code, 'SOURCE_CORRUPT');
    assert.match(t.failure?.message ?? '', /content changed during the fetch/);
    assert.equal(seen.length, 2, 'not fetched again from zero');
    await cdn.close();
  });

  it('a 206 that starts elsewhere than asked fails the task', { timeout: 20_000 }, async () => {
    seen.length = 0;
    const blob = randomBytes(8 * MiB + 9);
    const first = resetAfter3MiB(blob);
    handler = (req, res, n) => {
      if (n === 1) return first(req, res, n);
      res.writeHead(206, { 'content-length': blob.length, 'content-range': `bytes 0-${blob.length - 1}/${blob.length}` }).end(blob);
    };
    const { cdn, t } = fill(blob);
    await ended(t);
    assert.equal(t.failure?.code, 'SOURCE_CORRUPT');
    assert.match(t.failure?.message ?? '', /answered a resume from byte \d+ of \d+ with bytes 0-/);
    await cdn.close();
  });
});
