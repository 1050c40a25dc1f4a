// Through the real supernode: one reset or one 503 from the origin during the CDN fill no
// longer fails the registration or the task; the download port keeps serving the pieces cut
// while the CDN waits to resume; /metrics counts retries and fills by result.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import type { Supernode } from '../supernode/server.js';
import { waitFor } from './fixtures/proc.js';
import { metric, supernodeAt } from './helpers/cluster.js';
import { startFaultOrigin, type FaultOrigin } from './helpers/fault-origin.js';
import { randomBlob } from './helpers/origin.js';
import { registerPeer } from './helpers/sn-fixture.js';

const MiB = 1024 * 1024;

describe('supernode: transient origin failures during the CDN fill', () => {
  let dir = '';
  let origin: FaultOrigin;
  let sn: Supernode;
  let api = '';
  const metrics = async () => (await (await request(`${api}/metrics`)).body.text());
  const register = (d: string, cid: string) =>
    registerPeer(api, { rawUrl: origin.blobUrl(d), cid, ip: '127.0.0.31', port: 15002, path: `/peer/file/${cid}` });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-sn-retry-'));
    origin = await startFaultOrigin();
    sn = await supernodeAt(dir, '127.0.0.1', '', [], { sourceIdleMs: 500 });
    api = `http://127.0.0.1:${sn.apiPort}`;
  });
  after(async () => {
    await sn?.close();
    await origin?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a reset mid-fill: the registration answers 200, pieces stay served during the retry, the task completes from a Range', async () => {
    const blob = randomBlob(4 * MiB);
    const d = origin.add(blob);
    let release!: () => void;
    origin.faults.push({ kind: 'reset', after: 2 * MiB }, { kind: 'gate', open: new Promise<void>((r) => (release = r)) });
    const reg = await register(d, 'a');
    assert.equal(reg.code, 200);
    assert.equal(reg.fileLength, blob.length);
    await waitFor(() => origin.log.length === 2);
    const t = sn.cdn.get(reg.taskId)!;
    assert.equal(t.status, 'RUNNING');
    const p = t.layout!.piece(0);
    const res = await request(`http://127.0.0.1:${sn.downloadPort}${sn.downloadPath(reg.taskId)}`, { headers: { range: `bytes=${p.start}-${p.end}` } });
    assert.equal(res.statusCode, 206);
    const body = Buffer.from(await res.body.arrayBuffer());
    assert.deepEqual(body.subarray(4, 4 + p.contentLen), blob.subarray(0, p.contentLen));
    release();
    await waitFor(() => t.status === 'SUCCESS');
    assert.equal(t.sha256, d);
    assert.match(origin.log[1].range, /^bytes=[1-9]\d*-$/);
    assert.equal(origin.log[1].bytes, blob.length - Number(/\d+/.exec(origin.log[1].range)![0]));
    const m = await metrics();
    assert.equal(metric(m, 'supernode_source_retries_total'), 1);
    assert.equal(metric(m, 'supernode_cdn_fills_total', { result: 'success' }), 1);
  });

  it('one 503 before the first byte: the registration still answers 200 and the task completes', async () => {
    origin.log.length = 0;
    const blob = randomBlob(MiB);
    const d = origin.add(blob);
    origin.faults.push({ kind: 'status', status: 503 });
    const reg = await register(d, 'b');
    assert.equal(reg.code, 200);
    await waitFor(() => sn.cdn.get(reg.taskId)?.status === 'SUCCESS');
    assert.deepEqual(origin.log.map((l) => l.status), [503, 200]);
    const m = await metrics();
    assert.equal(metric(m, 'supernode_source_retries_total'), 2);
    assert.equal(metric(m, 'supernode_cdn_fills_total', { result: 'success' }), 2);
  });

  it('a 404 is not retried and counts as a source_error fill', async () => {
    origin.log.length = 0;
    const d = origin.add(randomBlob(1000));
    origin.faults.push({ kind: 'status', status: 404 });
    const reg = await register(d, 'c');
    assert.equal(reg.code, 607);
    assert.equal(origin.log.length, 1);
    const m = await metrics();
    assert.equal(metric(m, 'supernode_source_retries_total'), 2);
    assert.equal(metric(m, 'supernode_cdn_fills_total', { result: 'source_error' }), 1);
  });
});
