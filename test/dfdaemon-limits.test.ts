// dfget_flags and limits in a running dfdaemon: ratelimit per download and for the host's
// uploads together (it overrides dfget_flags' -s and --totallimit, as in Dragonfly), the upload concurrency cap, -f filter keys, and what the uploader refuses.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { writeFileSync } from 'node:fs';
import { startDfdaemon, type Dfdaemon } from '../dfdaemon/daemon.js';
import { loadDfdaemonConfig } from '../shared/config/dfdaemon.js';
import { createLogger } from '../shared/log/index.js';
import { WRAP_OVERHEAD } from '../shared/protocol/pieces.js';
import type { Supernode } from '../supernode/server.js';
import { dfdaemonAt, metric, supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { getViaProxy } from './helpers/proxy-get.js';

const MiB = 1024 * 1024;
const quiet = createLogger('test', { level: 'silent' });

describe('dfdaemon limits and dfget_flags', () => {
  let dir: string;
  let origin: Origin;
  let sn: Supernode;
  const daemons: Dfdaemon[] = [];
  const node = () => `127.0.0.61:${sn.apiPort}`;
  const start = async (ip: string, yaml: string) => {
    const d = await dfdaemonAt(dir, ip, [node()], yaml);
    daemons.push(d);
    return d;
  };

  /** A dfdaemon whose uploads share `ratelimit` (its downloads get it too) and take at most `slots` at once. */
  const uploader = async (ip: string, ratelimit: string, slots: number) => {
    const file = join(dir, `uploader-${ip}.yml`);
    const flags = JSON.stringify(['--node', node()]);
    writeFileSync(file, `port: 0\nworkHome: ${join(dir, `df-up-${ip}`)}\nratelimit: ${ratelimit}\nmaxConcurrentUploads: ${slots}\ndfget_flags: ${flags}\nproxies:\n  - regx: blobs/sha256.*\n`);
    const df = await startDfdaemon(loadDfdaemonConfig({ file, defaultFile: null }), { host: ip, log: quiet });
    daemons.push(df);
    return df;
  };
  /** GET piece n of the daemon's only task from its uploader, as a peer would. */
  const getPiece = (ip: string, df: Dfdaemon, n: number) => {
    const [tf] = [...df.store.all()];
    const p = tf.layout.piece(n);
    return request(`http://${ip}:${df.port}${df.piecePath(tf.taskId)}`, {
      headers: { range: `bytes=${p.start}-${p.end}`, pieceNum: String(n), pieceSize: String(tf.layout.pieceSize) },
    });
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-limits-'));
    origin = await startOrigin('127.0.0.60');
    sn = await supernodeAt(dir, '127.0.0.61');
  });
  after(async () => {
    for (const d of daemons) await d.close();
    await sn.close();
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('ratelimit applies to each download on its own', async () => {
    const df = await start('127.0.0.62', 'ratelimit: 4M\n');
    const blobs = [origin.add(randomBlob(4 * MiB)), origin.add(randomBlob(4 * MiB))];
    const t0 = performance.now();
    const timed = await Promise.all(
      blobs.map(async (d) => {
        const r = await getViaProxy('127.0.0.62', df.port, origin.blobUrl(d));
        return { ok: r.sha256 === d, ms: performance.now() - t0 };
      }),
    );
    for (const t of timed) {
      assert.ok(t.ok);
      assert.ok(t.ms > 750, `4 MiB at 4 MiB/s took ${t.ms.toFixed(0)} ms`);
    }
    // One shared 4 MiB/s budget would need about 2 s for both.
    assert.ok(Math.max(...timed.map((t) => t.ms)) < 1_700, `both took ${Math.max(...timed.map((t) => t.ms)).toFixed(0)} ms`);
  });

  it('ratelimit bounds all uploads together, and uploads beyond maxConcurrentUploads get 503', async () => {
    const df = await uploader('127.0.0.63', '256K', 2);
    // Small, because the download that fills the cache is held to 256 KiB/s too.
    const d = origin.add(randomBlob(1 * MiB));
    assert.equal((await getViaProxy('127.0.0.63', df.port, origin.blobUrl(d))).sha256, d);
    const [tf] = [...df.store.all()];
    assert.equal(tf.layout.pieceSize, 256 * 1024, 'a 1 MiB blob is cut into 256 KiB pieces');
    const piece = async (n: number) => {
      const res = await getPiece('127.0.0.63', df, n);
      const body = Buffer.from(await res.body.arrayBuffer());
      return { status: res.statusCode, ok: body.length === tf.layout.piece(n).contentLen + WRAP_OVERHEAD, ms: performance.now() - t0 };
    };
    const t0 = performance.now();
    const got = await Promise.all([piece(0), piece(1), piece(2)]);
    const served = got.filter((g) => g.status === 206);
    assert.equal(served.length, 2, JSON.stringify(got));
    assert.equal(got.filter((g) => g.status === 503).length, 1, 'the third concurrent upload is refused');
    assert.ok(served.every((g) => g.ok));
    // Two 256 KiB pieces through one 256 KiB/s budget (64 KiB burst): about 1.75 s, not 0.75.
    assert.ok(Math.max(...served.map((g) => g.ms)) > 1_500, `took ${Math.max(...served.map((g) => g.ms)).toFixed(0)} ms`);
  });

  it('a holder whose upload slots are all taken answers 503, and is neither blamed nor waited on', async () => {
    // The holder: one upload slot and 64 KiB/s for all its uploads, so one upload started by
    // hand (which the supernode does not know of) keeps it busy for seconds. Its own download of
    // the two-piece blob is held to 64 KiB/s as well.
    const holder = await uploader('127.0.0.64', '64K', 1);
    const d = origin.add(randomBlob(256 * 1024));
    assert.equal((await getViaProxy('127.0.0.64', holder.port, origin.blobUrl(d))).sha256, d);
    const slow = await getPiece('127.0.0.64', holder, 0);
    try {
      assert.equal(slow.statusCode, 206, 'the hand-made upload holds the only slot');
      const requester = await start('127.0.0.65', '');
      const t0 = performance.now();
      assert.equal((await getViaProxy('127.0.0.65', requester.port, origin.blobUrl(d))).sha256, d);
      const ms = performance.now() - t0;
      const mine = await (await request(`http://127.0.0.65:${requester.port}/metrics`)).body.text();
      assert.ok(metric(mine, 'dfdaemon_piece_busy_total') >= 1, 'the supernode sent the requester to the busy holder first');
      assert.equal(metric(mine, 'dfdaemon_piece_failures_total'), 0, 'a busy answer is not a failed piece');
      const snText = await (await request(`http://127.0.0.61:${sn.apiPort}/metrics`)).body.text();
      assert.equal(metric(snText, 'supernode_piece_failures_total'), 0, 'nor does the supernode count one');
      // The CDN stood in for the busy holder instead of the requester waiting out its upload.
      assert.ok(ms < 2_000, `took ${ms.toFixed(0)} ms`);
      assert.equal(origin.requests.get(d), 1);
    } finally {
      slow.body.destroy();
    }
  });

  it('serves only pieces of its own tasks', async () => {
    const df = daemons[0];
    const get = (path: string, headers: Record<string, string> = {}) => request(`http://127.0.0.62:${df.port}${path}`, { headers }).then(async (r) => (await r.body.dump(), r.statusCode));
    assert.equal(await get(`/peer/file/${'f'.repeat(64)}`, { range: 'bytes=0-99', pieceNum: '0', pieceSize: String(4 * MiB) }), 404);
    assert.equal(await get('/peer/file/..%2F..%2Fetc%2Fpasswd'), 404);
    const [tf] = [...df.store.all()];
    assert.equal(await get(df.piecePath(tf.taskId), { range: 'bytes=0-99', pieceNum: '0', pieceSize: '12345' }), 400);
  });

  it('-f drops the signed-URL keys from the task, so signed URLs of one blob are one task', async () => {
    const df = daemons[0];
    const d = origin.add(randomBlob(1 * MiB));
    for (const q of ['?Expires=1&Signature=a', '?Expires=2&Signature=b']) {
      assert.equal((await getViaProxy('127.0.0.62', df.port, origin.blobUrl(d) + q)).sha256, d);
    }
    assert.equal(origin.requests.get(d), 1);
  });
});
