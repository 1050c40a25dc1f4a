// The CDN's memory per origin download is small and bounded: docker pulls three layers at once,
// a preheat eight, and the supernode has 100 MB. Runs ./bin/supernode (its real heap flags) and
// reads its RSS from /proc while six 1 GiB downloads hang half-way.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { sleep, spawnTracked, tmpDir, waitFor, type TmpDir, type Tracked } from './fixtures/proc.js';
import { REPO_ROOT } from './helpers/e2e.js';
import { registerPeer } from './helpers/sn-fixture.js';

const MiB = 1024 * 1024;
const DECLARED = 1024 * MiB;
const SENT = 9 * MiB;
const DOWNLOADS = 6;
/**
 * The compose file's limit. Idle RSS is 65-70 MB; a whole 8 MiB piece held per download put the
 * six at 139-144 MB (+73), a 1 MiB buffer each at 85-88 MB (+16-19).
 */
const LIMIT_MB = 100;
/** Growth over idle: what the downloads cost, whatever the idle RSS of this machine and build. */
const GROWTH_MB = 30;

function vmRssMb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'VmRSS in /proc/<pid>/status');
  return Number(m[1]) / 1024;
}

describe('CDN memory under parallel stalled origin downloads', () => {
  let dir: TmpDir;
  let sn: Tracked;
  let api = '';
  const stalled: ServerResponse[] = [];
  // Declares 1 GiB, sends 9 MiB (a first 8 MiB piece and part of the second), then nothing.
  const origin = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': DECLARED });
    const chunk = Buffer.alloc(MiB, 0x5a);
    for (let i = 0; i < SENT / MiB; i++) res.write(chunk);
    stalled.push(res);
  });

  before(async () => {
    dir = await tmpDir('cdn-memory');
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
    sn = await spawnTracked(join(REPO_ROOT, 'bin', 'supernode'), ['--home-dir', join(dir.path, 'home'), '--listen-ip', '127.0.0.1', '--port=0', '--download-port=0'], {
      env: { ...process.env, DF_LOG_LEVEL: 'info' },
      name: 'supernode',
    });
    const port = await waitFor(() => /"apiPort":(\d+)/.exec(sn.readLog())?.[1], { timeoutMs: 15_000, message: 'supernode listening' });
    api = `http://127.0.0.1:${port}`;
  });

  after(async () => {
    await sn?.stop();
    origin.closeAllConnections();
    await new Promise((r) => origin.close(r));
    await dir?.cleanup();
  });

  it(`${DOWNLOADS} stalled 1 GiB downloads keep the supernode under ${LIMIT_MB} MB RSS`, async () => {
    const url = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
    const idle = vmRssMb(sn.pid);
    const regs = await Promise.all(
      Array.from({ length: DOWNLOADS }, (_, i) => registerPeer(api, { rawUrl: `${url}/big/${i}`, cid: `mem-${i}`, ip: '127.0.0.10', port: 0 })),
    );
    for (const r of regs) assert.equal(r.code, 200);
    assert.equal(regs[0].pieceSize, 8 * MiB, 'a 1 GiB blob is cut into 8 MiB pieces');
    // Every download has its first piece on disk; the rest of the 9 MiB follows at once.
    await waitFor(
      async () => {
        for (const r of regs) {
          const res = await request(`${api}/api/v1/tasks/${r.taskId}`);
          const t = (await res.body.json()) as { piecesReady: number; cdnStatus: string };
          if (t.piecesReady < 1 || t.cdnStatus !== 'RUNNING') return false;
        }
        return true;
      },
      { timeoutMs: 30_000, message: 'first piece of every download' },
    );
    let peak = 0;
    for (let i = 0; i < 20; i++) {
      peak = Math.max(peak, vmRssMb(sn.pid));
      await sleep(100);
    }
    assert.ok(peak < LIMIT_MB, `peak RSS ${peak.toFixed(1)} MB (idle ${idle.toFixed(1)} MB) must stay under ${LIMIT_MB} MB`);
    assert.ok(peak - idle < GROWTH_MB, `peak RSS ${peak.toFixed(1)} MB is more than ${GROWTH_MB} MB over idle ${idle.toFixed(1)} MB`);
  });
});
