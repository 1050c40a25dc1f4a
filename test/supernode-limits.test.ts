import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import type { Supernode } from '../supernode/server.js';
import { waitFor } from './fixtures/proc.js';
import { dfdaemonAt, metric, supernodeAt } from './helpers/cluster.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { getViaProxy } from './helpers/proxy-get.js';

interface Answer {
  status: number;
  code?: number;
  error?: string;
}

async function register(sn: Supernode, rawUrl: string, cid: string, host = '127.0.0.1'): Promise<Answer> {
  const res = await request(`http://${host}:${sn.apiPort}/peer/registry`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ rawUrl, cid, ip: '127.0.0.9', port: 15001, path: `/peer/file/${cid}` }),
  });
  const j = (await res.body.json()) as { code?: number; error?: string };
  return { status: res.statusCode, code: j.code, error: j.error };
}

describe('supernode limits on origin fetches and tasks', () => {
  let dir: string;
  let origin: Origin;
  /** Sends its head and 1,000 of 1,000,000 bytes, then stalls until told to finish. */
  let stalling: Server;
  let stallUrl: string;
  const held: ServerResponse[] = [];
  const cleanups: Array<() => Promise<unknown>> = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-sn-limits-'));
    origin = await startOrigin();
    stalling = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': 1_000_000 });
      res.write(Buffer.alloc(1_000));
      held.push(res);
    });
    await new Promise<void>((r) => stalling.listen(0, '127.0.0.1', () => r()));
    stallUrl = `http://127.0.0.1:${(stalling.address() as AddressInfo).port}`;
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c();
    for (const r of held) r.destroy();
    stalling.closeAllConnections();
    await new Promise<void>((r) => stalling.close(() => r()));
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('runs at most maxSourceFetches origin downloads; the next starts when one ends', async () => {
    const sn = await supernodeAt(dir, '127.0.0.1', '  maxSourceFetches: 2\n');
    cleanups.push(() => sn.close());
    const regs = [1, 2, 3].map((i) => register(sn, `${stallUrl}/f-${i}`, `c${i}`));
    const [a, b] = await Promise.all(regs.slice(0, 2));
    assert.deepEqual([a.code, b.code], [200, 200]);
    await waitFor(() => sn.cdn.fetchSlots.waiting === 1);
    assert.deepEqual(sn.cdn.fetchSlots, { running: 2, waiting: 1 });
    assert.equal(held.length, 2, 'the origin saw two requests, not three');
    // One stalled download ends (deleted; a hang-up would now be retried): the third gets the
    // slot and its answer.
    const first = [...sn.cdn.all()].find((t) => t.status === 'RUNNING')!;
    await sn.cdn.delete(first.taskId);
    assert.equal((await regs[2]).code, 200);
    assert.equal(held.length, 3);
    assert.deepEqual(sn.cdn.fetchSlots, { running: 2, waiting: 0 });
  });

  it('a registration queued for a fetch slot is not refused for the time it queued', async () => {
    const sn = await supernodeAt(dir, '127.0.0.5', '  maxSourceFetches: 1\n', [], { readyTimeoutMs: 1_000 });
    cleanups.push(() => sn.close());
    const first = held.length;
    assert.equal((await register(sn, `${stallUrl}/q-1`, 'q1', '127.0.0.5')).code, 200);
    const queued = register(sn, `${stallUrl}/q-2`, 'q2', '127.0.0.5');
    // Longer in the queue than the origin may take to answer.
    await new Promise((r) => setTimeout(r, 2_500));
    // The first download ends (deleted: a hang-up would now be retried) and frees the slot.
    assert.ok(held[first]);
    await sn.cdn.delete([...sn.cdn.all()].find((t) => t.status === 'RUNNING')!.taskId);
    assert.equal((await queued).code, 200, 'answered once its fetch ran and the origin answered');
  });

  it('refuses a registration for a task past maxTasks with 429, and our dfdaemon then fetches from the origin', async () => {
    const sn = await supernodeAt(dir, '127.0.0.2', '  maxTasks: 2\n');
    cleanups.push(() => sn.close());
    const blobs = [randomBlob(5_000), randomBlob(5_000), randomBlob(300_000)].map((b) => origin.add(b));
    assert.equal((await register(sn, origin.blobUrl(blobs[0]), 'a', '127.0.0.2')).code, 200);
    assert.equal((await register(sn, origin.blobUrl(blobs[1]), 'b', '127.0.0.2')).code, 200);
    const full = await register(sn, origin.blobUrl(blobs[2]), 'c', '127.0.0.2');
    assert.deepEqual(full, { status: 429, code: 500, error: 'TOO_MANY_REQUESTS' });
    assert.equal(origin.requests.get(blobs[2]) ?? 0, 0, 'no origin fetch for a refused task');
    // A task already held still takes new peers.
    assert.equal((await register(sn, origin.blobUrl(blobs[0]), 'a2', '127.0.0.2')).code, 200);
    assert.equal(sn.svc.tasks.size, 2);

    const df = await dfdaemonAt(dir, '127.0.0.3', [`127.0.0.2:${sn.apiPort}=1`]);
    cleanups.push(() => df.close());
    const got = await getViaProxy('127.0.0.3', df.port, origin.blobUrl(blobs[2]));
    assert.equal(got.status, 200);
    assert.equal(got.sha256, blobs[2], 'the whole blob, from the origin');
    const text = await (await fetch(`http://127.0.0.3:${df.port}/metrics`)).text();
    assert.ok(metric(text, 'dfdaemon_source_bytes_total') >= 300_000, 'the dfdaemon fetched it from the origin');
    const snText = await sn.metrics.registry.metrics();
    assert.equal(metric(snText, 'supernode_registrations_total', { result: 'TOO_MANY_REQUESTS' }), 2);
  });

  it('past maxTasks, an idle task leaves memory for the new one, and comes back from disk', async () => {
    const sn = await supernodeAt(dir, '127.0.0.4', '  maxTasks: 2\n');
    cleanups.push(() => sn.close());
    const blobs = [randomBlob(5_000), randomBlob(6_000), randomBlob(7_000)].map((b) => origin.add(b));
    const ids: string[] = [];
    for (const [i, d] of blobs.slice(0, 2).entries()) {
      assert.equal((await register(sn, origin.blobUrl(d), `idle-${i}`, '127.0.0.4')).code, 200);
      const id = [...sn.svc.tasks.keys()].find((k) => !ids.includes(k))!;
      ids.push(id);
      await waitFor(() => sn.cdn.get(id)?.status === 'SUCCESS');
      // Its one peer went away: nobody is using the task any more.
      sn.svc.serviceDown(id, `idle-${i}`);
    }
    assert.equal((await register(sn, origin.blobUrl(blobs[2]), 'new', '127.0.0.4')).code, 200, 'room was made');
    assert.equal(sn.svc.tasks.size, 2);
    assert.equal(sn.svc.tasks.has(ids[0]), false, 'the least recently used idle task left memory');
    assert.equal(sn.svc.tasks.has(ids[1]), true);
    // The evicted blob is still cached: registering it again costs the origin nothing. The
    // third task's peer is still downloading, so the second one makes room this time.
    assert.equal((await register(sn, origin.blobUrl(blobs[0]), 'again', '127.0.0.4')).code, 200);
    await waitFor(() => sn.cdn.get(ids[0])?.status === 'SUCCESS');
    assert.equal(origin.requests.get(blobs[0]), 1, 'restored from disk, not fetched again');
  });
});
