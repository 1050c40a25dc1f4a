// A piece cache that cannot be written (disk full, quota, read-only) is a local failure: the
// download ends at once, its sources are not blamed, the origin is not asked to fill the same
// disk, and blob requests pass straight through to the registry while the disk stays full.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Dfdaemon } from '../dfdaemon/daemon.js';
import type { PieceStore } from '../dfdaemon/store/piece-store.js';
import type { Supernode } from '../supernode/server.js';
import { dfdaemonAt, metric, supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { getViaProxy } from './helpers/proxy-get.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Every task file the store creates from now on refuses writes with ENOSPC after `allow` bytes. */
function failWritesAfter(store: PieceStore, allow: number): void {
  const openFile = store.handles.openFile;
  // Counted per file across its handles: the store may close and reopen a file between writes.
  const written = new Map<string, number>();
  store.handles.openFile = async (path, flags) => {
    const fh = await openFile(path, flags);
    if (flags === 'w+') written.set(path, 0);
    const write = fh.write.bind(fh) as (...a: unknown[]) => Promise<{ bytesWritten: number }>;
    (fh as unknown as { write: (...a: unknown[]) => Promise<{ bytesWritten: number }> }).write = async (...a: unknown[]) => {
      if ((written.get(path) ?? 0) >= allow) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
      const r = await write(...a);
      written.set(path, (written.get(path) ?? 0) + r.bytesWritten);
      return r;
    };
    return fh;
  };
}

describe('a piece cache that refuses writes mid-download', () => {
  let dir: string;
  let origin: Origin;
  let sn: Supernode;
  let df: Dfdaemon;
  const blob = randomBlob(8 * MiB);
  let digest: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-diskfull-'));
    origin = await startOrigin();
    digest = origin.add(blob);
    sn = await supernodeAt(dir);
    df = await dfdaemonAt(dir, '127.0.0.2', [`127.0.0.1:${sn.apiPort}`]);
    failWritesAfter(df.store, 2 * MiB);
  });
  after(async () => {
    await df?.close();
    await sn?.close();
    await origin?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('ends the download at once, blames no source, skips the origin, then passes pulls through', async () => {
    const url = origin.blobUrl(digest);
    const t0 = Date.now();
    const first = await getViaProxy('127.0.0.2', df.port, url);
    const firstMs = Date.now() - t0;
    // The header went out before the disk filled up: the body can only break off, but at once.
    assert.equal(first.status, 200);
    assert.equal(first.complete, false);
    assert.ok(firstMs < 10_000, `the first pull ended after ${firstMs} ms (a stalled swarm takes 30 s)`);

    const m = await df.metrics.registry.metrics();
    assert.equal(metric(m, 'dfdaemon_piece_failures_total'), 0, 'no piece counted as its source failing');
    assert.ok(metric(m, 'dfdaemon_piece_bytes_total') < 2 * blob.length, `piece bytes ${metric(m, 'dfdaemon_piece_bytes_total')}: no refetch loop`);
    assert.equal(metric(m, 'dfdaemon_source_bytes_total'), 0, 'no back-source into the same disk');
    assert.equal(metric(m, 'dfdaemon_blob_failures_total', { reason: 'disk' }), 1);
    // The supernode's CDN fetched the blob once; dfdaemon did not go to the origin.
    assert.equal(origin.requests.get(digest), 1);

    // While the disk stays full, the next pull goes straight to the registry, whole.
    const t1 = Date.now();
    const second = await getViaProxy('127.0.0.2', df.port, url);
    assert.equal(second.status, 200);
    assert.ok(second.complete);
    assert.equal(second.sha256, digest);
    assert.ok(Date.now() - t1 < 5_000);
    assert.equal(metric(await df.metrics.registry.metrics(), 'dfdaemon_requests_total', { route: 'direct' }), 1);
    assert.equal(origin.requests.get(digest), 2);
  });
});

/** A tmpfs of `size` at a new directory under `parent`, or undefined when this host cannot mount. */
function tmpfs(parent: string, size: string): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const at = join(parent, `tmpfs-${size}`);
  mkdirSync(at, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', at], { stdio: 'ignore' });
    return at;
  } catch {
    return undefined;
  }
}

describe('a real full disk (tmpfs, needs root)', () => {
  let dir: string;
  let repo: string | undefined;
  let origin: Origin;
  let sn: Supernode;
  let df: Dfdaemon;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-tmpfs-'));
    repo = tmpfs(dir, '3m');
    if (!repo) return;
    origin = await startOrigin();
    sn = await supernodeAt(dir);
    df = await dfdaemonAt(dir, '127.0.0.3', [`127.0.0.1:${sn.apiPort}`], `localrepo: ${repo}\n`);
  });
  after(async () => {
    await df?.close();
    await sn?.close();
    await origin?.close();
    if (repo) execFileSync('umount', [repo]);
    await rm(dir, { recursive: true, force: true });
  });

  it('passes a blob larger than the free space through before any header', async (t) => {
    if (!repo) return t.skip('needs root and tmpfs');
    const blob = randomBlob(8 * MiB);
    const digest = origin.add(blob);
    const t0 = Date.now();
    const r = await getViaProxy('127.0.0.3', df.port, origin.blobUrl(digest));
    assert.equal(r.status, 200);
    assert.ok(r.complete, `complete body (got ${r.bytes} of ${blob.length})`);
    assert.equal(r.sha256, sha(blob));
    assert.ok(Date.now() - t0 < 10_000);
    assert.equal(metric(await df.metrics.registry.metrics(), 'dfdaemon_requests_total', { route: 'direct' }), 1);
    assert.deepEqual((await readdir(repo)).filter((f) => f.endsWith('.service')), [], 'no task file left on the full disk');
  });

  it('stops at ENOSPC mid-download, then passes the next pulls through', async (t) => {
    if (!repo) return t.skip('needs root and tmpfs');
    // Fits the free space when it starts; then something else fills the disk.
    const blob = randomBlob(2.5 * MiB);
    const digest = origin.add(blob);
    origin.rate = 512 * 1024;
    const before = await df.metrics.registry.metrics();
    const t0 = Date.now();
    const pending = getViaProxy('127.0.0.3', df.port, origin.blobUrl(digest));
    await new Promise((r) => setTimeout(r, 800));
    writeFileSync(join(repo, 'filler'), Buffer.alloc(1.5 * MiB));
    const first = await pending;
    origin.rate = 0;
    assert.equal(first.complete, false);
    assert.ok(Date.now() - t0 < 15_000, `ended after ${Date.now() - t0} ms`);
    const m = await df.metrics.registry.metrics();
    assert.equal(metric(m, 'dfdaemon_piece_failures_total') - metric(before, 'dfdaemon_piece_failures_total'), 0);
    assert.equal(metric(m, 'dfdaemon_source_bytes_total'), 0);
    assert.equal(origin.requests.get(digest), 1, 'only the CDN fetched the origin');

    const second = await getViaProxy('127.0.0.3', df.port, origin.blobUrl(digest));
    assert.ok(second.complete);
    assert.equal(second.sha256, digest);
    await rm(join(repo, 'filler'));
  });
});
