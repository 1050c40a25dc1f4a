import assert from 'node:assert/strict';
import { open, readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import type { Supernode } from '../supernode/server.js';
import { CdnRepair, type PieceCheck } from '../supernode/service/cdn-repair.js';
import { waitFor } from './fixtures/proc.js';
import { supernodeAt } from './helpers/cluster.js';
import { randomBlob } from './helpers/origin.js';
import { registerPeer, useOrigin } from './helpers/sn-fixture.js';

interface Answer {
  code: number;
  data?: Array<{ range: string; cid: string; pieceNum: number }>;
}

/** A checker that records what it was asked and answers as told. */
function fakeChecker(answer: PieceCheck | (() => PieceCheck | Promise<PieceCheck>)) {
  const calls: Array<[string, number]> = [];
  return {
    calls,
    async recheckPiece(taskId: string, n: number): Promise<PieceCheck> {
      calls.push([taskId, n]);
      return typeof answer === 'function' ? answer() : answer;
    },
  };
}

describe('CdnRepair: when a piece is re-read (pure bounds, fake clock)', () => {
  it('one check per task at a time; a piece at most once per interval; errors end a check', async () => {
    let clock = 1_000;
    const pending: Array<(r: PieceCheck) => void> = [];
    const release = (r: PieceCheck) => pending.shift()!(r);
    const checker = fakeChecker(() => new Promise<PieceCheck>((r) => pending.push(r)));
    const repair = new CdnRepair(checker, () => clock, 10_000);
    const first = repair.suspect('t', 0);
    assert.ok(first);
    assert.equal(repair.suspect('t', 0), undefined, 'same task, check running');
    assert.equal(repair.suspect('t', 1), undefined, 'another piece of the task waits too');
    assert.ok(repair.suspect('u', 0), 'another task is checked at once');
    release('corrupt');
    release('ok');
    assert.equal(await first, 'corrupt');
    assert.equal(repair.suspect('t', 0), undefined, 'checked moments ago');
    clock += 9_999;
    assert.equal(repair.suspect('t', 0), undefined);
    const next = repair.suspect('t', 1);
    assert.ok(next, 'another piece may be checked');
    release('ok');
    await next;
    clock += 1;
    const again = repair.suspect('t', 0);
    assert.ok(again, 'after the interval the piece is checked again');
    release('missing');
    assert.equal(await again, 'missing');
    assert.deepEqual(checker.calls, [['t', 0], ['u', 0], ['t', 1], ['t', 0]]);

    const failing = new CdnRepair({ recheckPiece: () => Promise.reject(new Error('disk')) }, () => clock);
    assert.equal(await failing.suspect('t', 0), 'unknown');
    assert.ok(failing.suspect('t', 1), 'a failed check does not keep the task busy');
    const throwing = new CdnRepair({ recheckPiece: () => { throw new Error('sync'); } }, () => clock);
    assert.equal(await throwing.suspect('t', 0), 'unknown');
  });
});

describe('a piece peers fail to get from the CDN is re-checked, and a bad copy is refetched', () => {
  const ctx = useOrigin('svc-repair');
  let sn: Supernode;
  let api: string;
  let answer: PieceCheck = 'ok';
  const checker = fakeChecker(async () => {
    // Like the CDN's own: a bad copy is dropped, so the next registration fetches it again.
    const taskId = checker.calls.at(-1)![0];
    if (answer !== 'ok') await sn.cdn.delete(taskId);
    return answer;
  });

  before(async () => {
    // One CDN upload per task at a time, so a second peer waits while the first fetches.
    sn = await supernodeAt(ctx.dir, '127.0.0.1', '  peerDownLimit: 1\n', [], { pieceChecker: checker });
    api = `http://127.0.0.1:${sn.apiPort}`;
  });
  after(() => sn.close());

  const get = async (path: string, q: Record<string, string | number>) => {
    const res = await request(`${api}${path}?${new URLSearchParams(Object.entries(q).map(([k, v]) => [k, String(v)]))}`);
    return { status: res.statusCode, body: (await res.body.json()) as Answer };
  };
  const task = async (cid: string) => {
    const d = ctx.origin.add(randomBlob(150_000));
    const body = { rawUrl: ctx.origin.blobUrl(d), cid, ip: '127.0.0.31', port: 15002, path: `/peer/file/${cid}` };
    const { taskId } = await registerPeer(api, body);
    await waitFor(() => sn.cdn.get(taskId)?.status === 'SUCCESS');
    const a = await get('/peer/task', { taskId, srcCid: cid, status: 700 });
    assert.equal(a.body.code, 601);
    assert.match(a.body.data![0].cid, /^cdnnode:/);
    return { d, taskId, body, piece: a.body.data![0] };
  };

  it('a corrupt copy: the swarm is dropped, the peer registers again and the origin is asked again', async () => {
    answer = 'corrupt';
    checker.calls.length = 0;
    const { d, taskId, body, piece } = await task('a');
    assert.equal((await registerPeer(api, { ...body, cid: 'w' })).code, 200);
    const parked = get('/peer/task', { taskId, srcCid: 'w', status: 700, wait: 5_000 });
    await new Promise((r) => setTimeout(r, 100));
    const fail = { taskId, srcCid: 'a', status: 701, range: piece.range, result: 500, dstCid: piece.cid };
    const r = await get('/peer/task', fail);
    // The answer to the failing report itself may come before the check ends.
    assert.ok(r.status === 404 || r.body.code === 601 || r.body.code === 602, JSON.stringify(r));
    await waitFor(() => !sn.svc.tasks.has(taskId));
    assert.deepEqual(checker.calls, [[taskId, 0]]);
    assert.equal((await get('/peer/task', { taskId, srcCid: 'a', status: 701 })).status, 404, 'the peer is told to register again');
    assert.equal((await parked).status, 404, 'so is a peer that was waiting, not handed the dropped copy');
    assert.equal((await registerPeer(api, body)).code, 200);
    await waitFor(() => sn.cdn.get(taskId)?.status === 'SUCCESS');
    assert.equal(ctx.origin.requests.get(d), 2, 'fetched from the origin again');
    // More failures of the piece within the interval are not re-read.
    await get('/peer/task', { taskId, srcCid: 'a', status: 700 });
    await get('/peer/task', fail);
    assert.equal(checker.calls.length, 1);
  });

  it("stock dfget's /peer/piece/error against the CDN asks for a check too; a sound copy stays", async () => {
    answer = 'ok';
    checker.calls.length = 0;
    const { d, taskId, piece } = await task('b');
    const pe = await get('/peer/piece/error', { taskId, range: piece.range, srcCid: 'b', dstCid: piece.cid, errorType: 'FILE_MD5_NOT_MATCH' });
    assert.equal(pe.body.code, 200);
    await waitFor(() => checker.calls.length === 1);
    assert.deepEqual(checker.calls, [[taskId, 0]]);
    // A report against a peer is no reason to read the CDN's copy.
    await get('/peer/piece/error', { taskId, range: piece.range, srcCid: 'b', dstCid: 'some-peer', errorType: 'FILE_MD5_NOT_MATCH' });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(checker.calls.length, 1);
    assert.ok(sn.svc.tasks.has(taskId), 'a sound copy keeps its swarm');
    assert.equal(ctx.origin.requests.get(d), 1);
    assert.equal((await get('/peer/task', { taskId, srcCid: 'b', status: 701, range: piece.range, result: 501, dstCid: piece.cid })).body.code, 600);
  });

  it('FILE_NOT_EXIST with an empty range checks the file through its first piece', async () => {
    answer = 'missing';
    checker.calls.length = 0;
    const { taskId, piece } = await task('c');
    const pe = await get('/peer/piece/error', { taskId, range: '', srcCid: 'c', dstCid: piece.cid, errorType: 'FILE_NOT_EXIST' });
    assert.equal(pe.body.code, 200);
    await waitFor(() => !sn.svc.tasks.has(taskId));
    assert.deepEqual(checker.calls, [[taskId, 0]]);
  });
});

describe('with the CDN re-reading its own copy', () => {
  const ctx = useOrigin('svc-repair-real', '');

  it('a byte flipped in the CDN file is found after one failure, and the task comes back intact', async () => {
    const blob = randomBlob(300_000);
    const d = ctx.origin.add(blob);
    const body = { rawUrl: ctx.origin.blobUrl(d), cid: 'p', ip: '127.0.0.32', port: 15003, path: '/peer/file/p' };
    const { taskId } = await registerPeer(ctx.api, body);
    await waitFor(() => ctx.sn.cdn.get(taskId)?.status === 'SUCCESS');
    const file = ctx.sn.cdn.get(taskId)!.path;
    const fh = await open(file, 'r+');
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, 100);
    b[0] ^= 0xff;
    await fh.write(b, 0, 1, 100);
    await fh.close();

    const q = (extra: Record<string, string | number>) => new URLSearchParams(Object.entries({ taskId, srcCid: 'p', ...extra }).map(([k, v]) => [k, String(v)]));
    const a = (await (await request(`${ctx.api}/peer/task?${q({ status: 700 })}`)).body.json()) as Answer;
    const piece = a.data![0];
    assert.match(piece.cid, /^cdnnode:/);
    await (await request(`${ctx.api}/peer/task?${q({ status: 701, range: piece.range, result: 500, dstCid: piece.cid })}`)).body.dump();
    await waitFor(() => !ctx.sn.svc.tasks.has(taskId));
    assert.equal((await registerPeer(ctx.api, body)).code, 200);
    await waitFor(() => ctx.sn.cdn.get(taskId)?.status === 'SUCCESS');
    assert.equal(ctx.origin.requests.get(d), 2);
    const t = ctx.sn.cdn.get(taskId)!;
    const data = await readFile(t.path);
    const pieces = Array.from({ length: t.layout!.count }, (_, n) => t.layout!.piece(n));
    assert.ok(Buffer.concat(pieces.map((p) => data.subarray(p.start + 4, p.start + 4 + p.contentLen))).equals(blob), 'the copy is intact again');
  });
});
