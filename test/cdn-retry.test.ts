// A transient origin failure during a CDN fill (a reset, a 503, a stall) is retried from the
// last whole piece with a Range, while the task stays RUNNING and its pieces stay served; a
// permanent one (404, 403, a Retry-After too long) is not. Real origin on port 0, real Cdn.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Cdn, type CdnOptions } from '../supernode/cdn/cdn.js';
import { dataFile, partFile } from '../supernode/cdn/paths.js';
import { DEFAULT_RETRY } from '../supernode/cdn/retry.js';
import { SOURCE_IDLE_MS } from '../supernode/cdn/source.js';
import { WRAP_OVERHEAD } from '../shared/protocol/pieces.js';
import { randomBlob } from './helpers/origin.js';
import { capturingLog, ended, unwrap } from './helpers/cdn-file.js';
import { startFaultOrigin, type FaultOrigin } from './helpers/fault-origin.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

describe('CDN fill: transient origin failures are retried from the last whole piece', () => {
  let dir = '';
  let origin: FaultOrigin;
  let n = 0;
  const results: string[] = [];
  let retries = 0;
  const fast = { attempts: 3, baseMs: 20, maxWaitMs: 2_000, maxTotal: 10 };
  const newCdn = (extra: Partial<CdnOptions> = {}) => {
    const home = join(dir, `home${n++}`);
    const c = new Cdn({
      homeDir: home, failAccessIntervalMs: 180_000, now: Date.now, log: pino({ level: 'silent' }), retry: fast, sourceIdleMs: 400,
      onFillEnd: (r) => results.push(r), onRetry: () => retries++, ...extra,
    });
    return { cdn: c, home };
  };
  const req = (d: string) => ({ taskId: sha(`${d}-${n}`), url: origin.blobUrl(d), headers: {}, insecure: false, rootCAs: [], expectSha256: d });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-cdn-retry-'));
    origin = await startFaultOrigin();
  });
  after(async () => {
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });
  const reset = () => {
    origin.log.length = 0;
    origin.faults.length = 0;
    results.length = 0;
    retries = 0;
  };

  it('a reset mid-body: resumed with Range from the first piece not whole; same file, one retry', { timeout: 15_000 }, async () => {
    reset();
    const blob = randomBlob(8 * MiB + 777);
    const d = origin.add(blob);
    origin.faults.push({ kind: 'reset', after: 3 * MiB + 1000 });
    const { cdn, home } = newCdn();
    const t = cdn.ensure(req(d));
    await ended(t);
    assert.equal(t.status, 'SUCCESS', JSON.stringify(t.failure));
    assert.equal(t.sha256, d);
    assert.deepEqual(await unwrap(dataFile(home, t.taskId), t), blob);
    assert.equal(origin.log.length, 2, JSON.stringify(origin.log));
    assert.equal(origin.log[0].range, '');
    const m = /^bytes=(\d+)-$/.exec(origin.log[1].range);
    assert.ok(m, `second request resumes with a Range: ${JSON.stringify(origin.log)}`);
    const from = Number(m[1]);
    const contentSize = t.pieceSize - WRAP_OVERHEAD;
    assert.equal(from % contentSize, 0, 'from a piece boundary');
    assert.ok(from > 0 && from <= 3 * MiB + 1000, `from ${from}`);
    assert.equal(t.resumedFrom, from);
    assert.equal(origin.log[1].bytes, blob.length - from, 'the rest only');
    assert.equal(retries, 1);
    assert.deepEqual(results, ['success']);
    await cdn.close();
  });

  it('while a retry waits on the origin, the task stays RUNNING and pieces already cut are served', { timeout: 15_000 }, async () => {
    reset();
    const blob = randomBlob(4 * MiB);
    const d = origin.add(blob);
    let release!: () => void;
    origin.faults.push({ kind: 'reset', after: 2 * MiB }, { kind: 'gate', open: new Promise<void>((r) => (release = r)) });
    const { cdn, home } = newCdn();
    const t = cdn.ensure(req(d));
    while (origin.log.length < 2) await new Promise((r) => setTimeout(r, 10));
    assert.equal(t.status, 'RUNNING');
    assert.ok(t.hasPiece(0) && t.pieces.length > 0);
    // Piece 0 as the download port would read it: from the .part file, verified by its md5.
    const p = t.layout!.piece(0);
    const fh = await open(t.path, 'r');
    const b = Buffer.alloc(p.contentLen + WRAP_OVERHEAD);
    await fh.read(b, 0, b.length, p.start);
    await fh.close();
    assert.equal(`${createHash('md5').update(b).digest('hex')}:${b.length}`, t.pieces[0].md5);
    assert.deepEqual(b.subarray(4, 4 + p.contentLen), blob.subarray(0, p.contentLen));
    release();
    await ended(t);
    assert.equal(t.status, 'SUCCESS');
    assert.deepEqual(await unwrap(dataFile(home, t.taskId), t), blob);
    await cdn.close();
  });

  it('a 503 with a short Retry-After before any byte: retried, after the wait it asked for', { timeout: 15_000 }, async () => {
    reset();
    const blob = randomBlob(1 * MiB);
    const d = origin.add(blob);
    origin.faults.push({ kind: 'status', status: 503, retryAfter: '1' });
    const { cdn } = newCdn();
    const t0 = Date.now();
    const t = cdn.ensure(req(d));
    await t.ready;
    assert.ok(Date.now() - t0 >= 950, 'waited for Retry-After');
    await ended(t);
    assert.equal(t.status, 'SUCCESS');
    assert.deepEqual(origin.log.map((l) => [l.range, l.status]), [['', 503], ['', 200]]);
    assert.equal(retries, 1);
    await cdn.close();
  });

  it('a stall mid-body is cut after the source idle timeout and resumed', { timeout: 15_000 }, async () => {
    reset();
    const blob = randomBlob(4 * MiB);
    const d = origin.add(blob);
    origin.faults.push({ kind: 'stall', after: MiB + 5 });
    const { cdn, home } = newCdn();
    const t0 = Date.now();
    const t = cdn.ensure(req(d));
    await ended(t);
    assert.equal(t.status, 'SUCCESS', JSON.stringify(t.failure));
    assert.ok(Date.now() - t0 >= 400, 'cut by the idle timer');
    assert.equal(origin.log.length, 2);
    assert.match(origin.log[1].range, /^bytes=[1-9]\d*-$/);
    assert.deepEqual(await unwrap(dataFile(home, t.taskId), t), blob);
    assert.deepEqual(results, ['success']);
    await cdn.close();
  });

  it('not retried: 404, 403, a 503 asking for longer than the longest wait', { timeout: 15_000 }, async () => {
    for (const [status, retryAfter, code] of [[404, undefined, 'SOURCE_NOT_FOUND'], [403, undefined, 'SOURCE_AUTH'], [503, '120', 'SOURCE_BAD_STATUS']] as const) {
      reset();
      const d = origin.add(randomBlob(1000 + status));
      origin.faults.push({ kind: 'status', status, retryAfter });
      const { cdn, home } = newCdn();
      const t = cdn.ensure(req(d));
      await ended(t);
      assert.equal(t.failure?.code, code);
      assert.equal(t.failure?.upstreamStatus, status);
      assert.equal(origin.log.length, 1, `${status}: one request`);
      assert.equal(retries, 0);
      assert.deepEqual(results, ['source_error']);
      assert.equal(existsSync(partFile(home, t.taskId)), false);
      await cdn.close();
    }
  });

  it('gives up after 3 failures in a row without progress, and says why', { timeout: 15_000 }, async () => {
    reset();
    const d = origin.add(randomBlob(2 * MiB));
    for (let i = 0; i < 5; i++) origin.faults.push({ kind: 'reset', after: 0 });
    const { cdn, home } = newCdn();
    const t = cdn.ensure(req(d));
    await ended(t);
    assert.equal(t.status, 'SOURCE_ERROR');
    assert.equal(t.failure?.code, 'SOURCE_UNREACHABLE');
    assert.equal(t.failure?.dfCode, 607);
    assert.equal(origin.log.length, 4, 'one try and three retries');
    assert.equal(retries, 3);
    assert.deepEqual(results, ['source_error']);
    assert.equal(existsSync(partFile(home, t.taskId)), false);
    await cdn.close();
  });

  it('a shutdown mid-fill is a cancel: logged at info, counted as cancelled, files kept', { timeout: 15_000 }, async () => {
    reset();
    const d = origin.add(randomBlob(2 * MiB));
    origin.faults.push({ kind: 'stall', after: MiB });
    const { log, lines } = capturingLog();
    const { cdn, home } = newCdn({ log, sourceIdleMs: 60_000 });
    const t = cdn.ensure(req(d));
    while (t.pieces.length === 0) await new Promise((r) => setTimeout(r, 10));
    await cdn.close();
    assert.equal(t.status, 'FAILED');
    assert.equal(t.failure?.code, 'CANCELLED');
    assert.deepEqual(results, ['cancelled']);
    assert.deepEqual(lines.filter((l) => l.level >= 40).map((l) => l.msg), [], 'no warning');
    assert.equal(lines.filter((l) => l.msg === 'cdn task cancelled' && l.level === 30).length, 1);
    assert.ok(existsSync(partFile(home, t.taskId)), 'kept for the next run to resume');
  });

  it('a stalled origin is cut and retried before a dfdaemon gives up on the swarm (30 s)', { timeout: 15_000 }, () => {
    assert.ok(SOURCE_IDLE_MS <= 20_000, `idle timeout ${SOURCE_IDLE_MS} ms`);
    assert.ok(SOURCE_IDLE_MS + DEFAULT_RETRY.baseMs < 30_000);
  });
});
