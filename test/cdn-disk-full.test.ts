// The supernode's own disk running out is LOCAL_STORAGE, never "source unreachable", and is not
// retried; fills of known length are admitted only while the disk holds them on top of what
// the running fills still owe, so the ones that fit finish. A real small tmpfs (root only).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Cdn } from '../supernode/cdn/cdn.js';
import { dataFile, partFile } from '../supernode/cdn/paths.js';
import { randomBlob } from './helpers/origin.js';
import { startFaultOrigin, type FaultOrigin } from './helpers/fault-origin.js';
import { capturingLog, ended, unwrap } from './helpers/cdn-file.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const root = process.getuid?.() === 0;

describe('CDN fills on a supernode disk that runs out (tmpfs)', { skip: !root && 'needs root to mount a tmpfs' }, () => {
  let dir = '';
  let mnt = '';
  let origin: FaultOrigin;
  let n = 0;
  const results: string[] = [];
  let retries = 0;
  const fast = { attempts: 3, baseMs: 20, maxWaitMs: 2_000, maxTotal: 10 };
  const req = (d: string) => ({ taskId: sha(`${d}-${n++}`), url: origin.blobUrl(d), headers: {}, insecure: false, rootCAs: [], expectSha256: d });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-cdn-full-'));
    mnt = join(dir, 'mnt');
    await mkdir(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=25m', 'tmpfs', mnt]);
    origin = await startFaultOrigin();
  });
  after(async () => {
    await origin?.close();
    if (mnt) execFileSync('umount', [mnt]);
    await rm(dir, { recursive: true, force: true });
  });

  it('three 10 MiB fills at once on 25 MiB: two finish, the third is refused as LOCAL_STORAGE before it writes', async () => {
    const { log, lines } = capturingLog();
    const home = join(mnt, 'a');
    const cdn = new Cdn({ homeDir: home, failAccessIntervalMs: 180_000, now: Date.now, log, retry: fast, onFillEnd: (r) => results.push(r), onRetry: () => retries++ });
    const blobs = [randomBlob(10 * MiB), randomBlob(10 * MiB), randomBlob(10 * MiB)];
    const tasks = blobs.map((b) => cdn.ensure(req(origin.add(b))));
    await Promise.all(tasks.map(ended));
    const ok = tasks.filter((t) => t.status === 'SUCCESS');
    const bad = tasks.filter((t) => t.status !== 'SUCCESS');
    assert.equal(ok.length, 2, JSON.stringify(tasks.map((t) => t.failure)));
    for (const t of ok) assert.deepEqual(await unwrap(dataFile(home, t.taskId), t), blobs[tasks.indexOf(t)]);
    assert.equal(bad[0].status, 'FAILED');
    assert.equal(bad[0].failure?.code, 'LOCAL_STORAGE');
    assert.equal(bad[0].failure?.dfCode, 500);
    assert.match(bad[0].failure?.message ?? '', /^supernode storage: not enough disk for this task: it needs \d+ bytes/);
    assert.equal(existsSync(partFile(home, bad[0].taskId)), false);
    assert.equal(retries, 0, 'a full disk is not retried');
    assert.deepEqual(results.sort(), ['storage_error', 'success', 'success']);
    assert.equal(lines.filter((l) => /source/i.test(JSON.stringify(l.failure ?? ''))).length, 0, 'nothing blames the origin');
    await cdn.close();
    await rm(home, { recursive: true, force: true });
  });

  it('a refused fill first asks GC for room; room made, it is admitted', async () => {
    const home = join(mnt, 'b');
    const rooms: number[] = [];
    let cdn!: Cdn;
    let victim = '';
    cdn = new Cdn({
      homeDir: home, failAccessIntervalMs: 180_000, now: Date.now, log: pino({ level: 'silent' }), retry: fast,
      makeRoom: async (bytes) => {
        rooms.push(bytes);
        if (!victim) return 0;
        const t = cdn.get(victim)!;
        const freed = t.diskBytes;
        await cdn.delete(victim);
        victim = '';
        return freed;
      },
    });
    const a = cdn.ensure(req(origin.add(randomBlob(15 * MiB))));
    await ended(a);
    assert.equal(a.status, 'SUCCESS');
    victim = a.taskId;
    const blob = randomBlob(15 * MiB);
    const b = cdn.ensure(req(origin.add(blob)));
    await ended(b);
    assert.equal(b.status, 'SUCCESS', JSON.stringify(b.failure));
    assert.equal(rooms.length, 1);
    assert.ok(rooms[0] > 0 && rooms[0] <= 15 * MiB + 64 * 5, `asked for ${rooms[0]}`);
    assert.equal(existsSync(dataFile(home, a.taskId)), false, 'the victim went');
    assert.deepEqual(await unwrap(dataFile(home, b.taskId), b), blob);
    await cdn.close();
    await rm(home, { recursive: true, force: true });
  });

  it('a fill of unknown length that hits ENOSPC: LOCAL_STORAGE naming the errno or short write, one origin request, no .part left', async () => {
    const home = join(mnt, 'c');
    results.length = 0;
    retries = 0;
    origin.chunked = true;
    origin.log.length = 0;
    try {
      const cdn = new Cdn({ homeDir: home, failAccessIntervalMs: 180_000, now: Date.now, log: pino({ level: 'silent' }), retry: fast, onFillEnd: (r) => results.push(r), onRetry: () => retries++ });
      const t = cdn.ensure(req(origin.add(randomBlob(30 * MiB))));
      await ended(t);
      assert.equal(t.status, 'FAILED');
      assert.equal(t.failure?.code, 'LOCAL_STORAGE', JSON.stringify(t.failure));
      assert.equal(t.failure?.dfCode, 500);
      assert.match(t.failure?.message ?? '', /^supernode storage: (write at \d+: ENOSPC|short write at \d+)/);
      assert.equal(origin.log.length, 1, 'not retried');
      assert.equal(retries, 0);
      assert.deepEqual(results, ['storage_error']);
      assert.equal(existsSync(partFile(home, t.taskId)), false);
      await cdn.close();
    } finally {
      origin.chunked = false;
      await rm(home, { recursive: true, force: true });
    }
  });
});
