// A P2P download that ends at the origin asks it only for the pieces still missing: the
// registry's egress is the point of the project, and peers may have delivered pieces far past
// the first hole.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { missingRuns } from '../dfdaemon/peer/back-source.js';
import type { DiskRoom } from '../dfdaemon/peer/disk-room.js';
import { SourceDownloads } from '../dfdaemon/peer/source-download.js';
import { PieceStore } from '../dfdaemon/store/piece-store.js';
import type { TaskFile } from '../dfdaemon/store/task-file.js';
import { Layout } from '../shared/protocol/pieces.js';
import { TokenBucket } from '../shared/ratelimit/token-bucket.js';
import { startOrigin, type Origin } from './helpers/origin.js';

const KiB = 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let dir: string;
let origin: Origin;
let store: PieceStore;
let sourceBytes = 0;
let sources: SourceDownloads;
const stop = new AbortController();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfts-source-runs-'));
  origin = await startOrigin('127.0.0.1');
  store = new PieceStore(dir);
  const counters = { pieceBytes: () => undefined, pieceFailed: () => undefined, pieceBusy: () => undefined, sourceBytes: (n: number) => void (sourceBytes += n) };
  // completeFromSource writes into a task file that already exists, so it never asks for room.
  sources = new SourceDownloads({ store, counters, notbs: false }, {} as DiskRoom, stop.signal);
});

after(async () => {
  stop.abort();
  await store.close();
  await origin.close();
  await rm(dir, { recursive: true, force: true });
});

/** A task file of `blob` in 256 KiB pieces holding exactly the pieces not in `holes`. */
async function partial(blob: Buffer, holes: number[]): Promise<TaskFile> {
  const tf = await store.open(randomBytes(32).toString('hex'), new Layout(blob.length, 256 * KiB));
  for (let n = 0; n < tf.layout.count; n++) {
    if (holes.includes(n)) continue;
    const p = tf.layout.piece(n);
    await tf.writeAt(blob.subarray(p.rawStart, p.rawStart + p.contentLen), p.rawStart);
    tf.markDone(n);
  }
  return tf;
}

const unlimited = () => new TokenBucket(0);

describe('the fallback to the origin', () => {
  it('asks for each missing run of pieces, and the origin sends only their bytes', async () => {
    const blob = randomBytes(12 * (256 * KiB - 5) + 100);
    const digest = origin.add(blob);
    const tf = await partial(blob, [2, 3, 7, 12]);
    assert.equal(tf.layout.count, 13);
    const before = origin.log.length;
    sourceBytes = 0;
    await sources.completeFromSource({ url: origin.blobUrl(digest), headers: {} }, tf, unlimited());
    const asked = origin.log.slice(before);
    const c = tf.layout.contentSize;
    assert.deepEqual(asked.map((e) => e.range), [`bytes=${2 * c}-${4 * c - 1}`, `bytes=${7 * c}-${8 * c - 1}`, `bytes=${12 * c}-`]);
    const want = 2 * c + c + tf.layout.piece(12).contentLen;
    assert.equal(asked.reduce((n, e) => n + e.bytes, 0), want, 'the origin sent the missing pieces and nothing else');
    assert.equal(sourceBytes, want);
    assert.equal(tf.complete, true);
    assert.equal(sha256(await readFile(tf.path)), digest);
  });

  it('merges the smallest gaps once there are more runs than it asks for at once', () => {
    const has = new Set([1, 3, 4, 6, 7, 8, 10, 12, 13, 14, 15, 17, 19, 21, 23]);
    const tf = { layout: { count: 25 }, has: (n: number) => has.has(n) };
    assert.deepEqual(missingRuns(tf, 100), [[0, 1], [2, 3], [5, 6], [9, 10], [11, 12], [16, 17], [18, 19], [20, 21], [22, 23], [24, 25]]);
    // Ten runs into eight: the two one-piece gaps merged first are the earliest ones.
    assert.deepEqual(missingRuns(tf, 8), [[0, 3], [5, 6], [9, 12], [16, 17], [18, 19], [20, 21], [22, 23], [24, 25]]);
    assert.deepEqual(missingRuns(tf, 1), [[0, 25]]);
    assert.deepEqual(missingRuns({ layout: { count: 3 }, has: () => true }), []);
  });

  it('with scattered holes, completes the file in at most eight requests', async () => {
    const blob = randomBytes(30 * (256 * KiB - 5));
    const digest = origin.add(blob);
    const holes = Array.from({ length: 15 }, (_, i) => 2 * i);
    const tf = await partial(blob, holes);
    const before = origin.log.length;
    await sources.completeFromSource({ url: origin.blobUrl(digest), headers: {} }, tf, unlimited());
    const asked = origin.log.slice(before);
    assert.equal(asked.length, 8);
    assert.ok(asked.reduce((n, e) => n + e.bytes, 0) < blob.length, 'less than the whole blob again');
    assert.equal(sha256(await readFile(tf.path)), digest);
  });

  describe('from an origin that answers bytes=a-b with everything from a to the end', () => {
    let server: Server;
    let url: string;
    const asked: string[] = [];
    const blob = randomBytes(16 * (256 * KiB - 5));
    before(async () => {
      server = createServer((req, res) => {
        const start = Number(/^bytes=(\d+)-/.exec(req.headers.range ?? '')?.[1] ?? 0);
        asked.push(req.headers.range ?? '');
        res.writeHead(206, { 'content-length': blob.length - start, 'content-range': `bytes ${start}-${blob.length - 1}/${blob.length}` });
        // In 64 KiB writes with backpressure, so what a client stops reading is never sent.
        let off = start;
        const pump = () => {
          while (off < blob.length) {
            const chunk = blob.subarray(off, off + 64 * KiB);
            off += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        res.on('close', () => (off = blob.length));
        pump();
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v2/x/blobs/sha256:${sha256(blob)}`;
    });
    after(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });

    it('reads each answer only as far as it asked, not the rest of the blob once per run', async () => {
      // Every other piece missing: eight runs.
      const holes = Array.from({ length: 8 }, (_, i) => 2 * i);
      const tf = await partial(blob, holes);
      sourceBytes = 0;
      await sources.completeFromSource({ url, headers: {} }, tf, unlimited());
      assert.equal(tf.complete, true);
      assert.equal(sha256(await readFile(tf.path)), sha256(blob));
      const missing = holes.reduce((n, h) => n + tf.layout.piece(h).contentLen, 0);
      // At most one read past each run's end (reads are at most 64 KiB here).
      assert.ok(sourceBytes <= missing + asked.length * 64 * KiB, `took ${sourceBytes} bytes from the origin for ${missing} missing (blob ${blob.length}) in ${asked.length} requests`);
    });
  });

  describe('from an origin that ignores Range', () => {
    let server: Server;
    let url: string;
    let requests = 0;
    const blob = randomBytes(10 * (256 * KiB - 5));
    before(async () => {
      server = createServer((_req, res) => {
        requests++;
        res.writeHead(200, { 'content-length': blob.length }).end(blob);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v2/x/blobs/sha256:${sha256(blob)}`;
    });
    after(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });

    it('takes the whole body once, and asks nothing more', async () => {
      const tf = await partial(blob, [1, 5, 8]);
      await sources.completeFromSource({ url, headers: {} }, tf, unlimited());
      assert.equal(requests, 1);
      assert.equal(tf.complete, true);
      assert.equal(sha256(await readFile(tf.path)), sha256(blob));
    });
  });
});
