import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { filterUrl, taskId } from '../shared/protocol/taskid.js';
import { waitFor } from './fixtures/proc.js';
import { metric } from './helpers/cluster.js';
import { randomBlob } from './helpers/origin.js';
import { useOrigin } from './helpers/sn-fixture.js';

interface Answer {
  status: number;
  code?: number;
  error?: string;
  msg?: string;
  taskId?: string;
}

describe('supernode API under hostile registrations', () => {
  const ctx = useOrigin('sn-hostile', '');
  let n = 0;

  const register = async (body: Record<string, unknown>): Promise<Answer> => {
    const res = await request(`${ctx.api}/peer/registry`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ cid: `c${++n}`, ip: '127.0.0.9', port: 15001, path: `/peer/file/f${n}`, ...body }),
    });
    const j = (await res.body.json()) as { code?: number; error?: string; msg?: string; data?: { taskId: string } };
    return { status: res.statusCode, code: j.code, error: j.error, msg: j.msg, taskId: j.data?.taskId };
  };

  it('taskUrl may only be rawUrl with some query parameters left out', async () => {
    const victim = ctx.origin.blobUrl(ctx.origin.add(randomBlob(3000)));
    const evil = ctx.origin.blobUrl(ctx.origin.add(randomBlob(3000)));
    const other = victim.replace('127.0.0.1', 'localhost');
    const refused: Array<[string, string]> = [
      ['another path', evil],
      ['another host', other],
      ['a parameter rawUrl lacks', `${victim}?a=1&c=3`],
      ['parameters out of order', `${victim}?b=2&a=1`],
      ['a parameter with another value', `${victim}?a=2`],
    ];
    for (const [what, taskUrl] of refused) {
      const rawUrl = what === 'another path' || what === 'another host' ? victim : `${victim}?a=1&b=2`;
      const a = await register({ rawUrl, taskUrl });
      assert.deepEqual([a.status, a.code, a.error], [400, 501, 'BAD_REQUEST'], `${what}: ${JSON.stringify(a)}`);
      assert.match(a.msg ?? '', /taskUrl/);
    }
    // The poisoning the review found: the victim's task must not exist with the evil bytes.
    assert.equal(ctx.sn.svc.tasks.get(taskId(victim)), undefined);

    // What stock dfget's -f and our dfdaemon's filter produce is accepted.
    const signed = `${victim}?X-Amz-Date=1&Expires=9&a=1&Signature=zz&b=2`;
    for (const filter of [[], ['Expires', 'Signature'], ['Expires', 'Signature', 'X-Amz-Date', 'a', 'b']]) {
      const taskUrl = filterUrl(signed, filter);
      const a = await register({ rawUrl: signed, taskUrl });
      assert.deepEqual([a.status, a.code], [200, 200], `filter ${filter.join('&')}: ${JSON.stringify(a)}`);
      assert.equal(a.taskId, taskId(taskUrl));
    }
    // No taskUrl: rawUrl is the task URL.
    const plain = await register({ rawUrl: victim });
    assert.deepEqual([plain.status, plain.code, plain.taskId], [200, 200, taskId(victim)]);
  });

  it('caps headers in either form, by count and by size, and takes only a hex md5', async () => {
    const data = randomBlob(3000);
    const digest = ctx.origin.add(data);
    const url = ctx.origin.blobUrl(digest);
    const many = Object.fromEntries(Array.from({ length: 129 }, (_, i) => [`X-H${i}`, 'v']));
    const big = { 'X-A': 'a'.repeat(8_500), 'X-B': 'b'.repeat(8_500) };
    const refused: Array<[string, Record<string, unknown>, RegExp]> = [
      ['129 headers as an object', { headers: many }, /headers has too many items/],
      ['129 headers as a list', { headers: Object.entries(many).map(([k, v]) => `${k}:${v}`) }, /headers has too many items/],
      ['17 KB of headers as an object', { headers: big }, /headers is too large/],
      ['17 KB of headers as a list', { headers: Object.entries(big).map(([k, v]) => `${k}:${v}`) }, /headers is too large/],
      ['md5 not hex', { md5: 'zz' }, /md5/],
      ['md5 of 32 non-hex characters', { md5: 'z'.repeat(32) }, /md5/],
      ['md5 too long', { md5: 'a'.repeat(33) }, /md5/],
    ];
    for (const [what, extra, msg] of refused) {
      const a = await register({ rawUrl: `${url}?case=${encodeURIComponent(what)}`, ...extra });
      assert.deepEqual([a.status, a.code, a.error], [400, 501, 'BAD_REQUEST'], `${what}: ${JSON.stringify(a)}`);
      assert.match(a.msg ?? '', msg, what);
    }
    assert.equal(ctx.origin.requests.get(digest) ?? 0, 0, 'no bad registration cost an origin fetch');
    // At the caps, and a real md5 in either case, it registers.
    const md5 = (await import('node:crypto')).createHash('md5').update(data).digest('hex').toUpperCase();
    const ok = await register({ rawUrl: url, md5, headers: Object.fromEntries(Object.entries(many).slice(0, 128)) });
    assert.deepEqual([ok.status, ok.code], [200, 200], JSON.stringify(ok));
  });

  it('counts a piece failure only once it names a piece of a registered peer', async () => {
    const failures = async (source: string) => metric(await ctx.sn.metrics.registry.metrics(), 'supernode_piece_failures_total', { source });
    const url = ctx.origin.blobUrl(ctx.origin.add(randomBlob(300_000)));
    const reg = await register({ rawUrl: url, cid: 'reporter' });
    assert.equal(reg.code, 200);
    const id = reg.taskId!;
    await waitFor(() => ctx.sn.cdn.get(id)?.status === 'SUCCESS');
    const e = ctx.sn.svc.tasks.get(id)!;
    const p0 = e.cdn.layout!.piece(0);
    const range = `${p0.start}-${p0.end}`;
    const task = async (q: Record<string, string>) => {
      const res = await request(`${ctx.api}/peer/task?${new URLSearchParams(q)}`);
      return { status: res.statusCode, body: (await res.body.json()) as { code: number; error?: string } };
    };
    const before = { cdn: await failures('cdn'), peer: await failures('peer') };
    const rejected: Array<Record<string, string>> = [
      { taskId: 'no-such-task', srcCid: 'nobody', range: 'garbage', result: '500', dstCid: 'x' },
      { taskId: id, srcCid: 'nobody', range, result: '500', dstCid: e.sched.cdnCid },
      { taskId: id, srcCid: 'reporter', range: 'garbage', result: '500', dstCid: e.sched.cdnCid },
      { taskId: id, srcCid: 'reporter', range: `${p0.start}-${p0.end + 7}`, result: '500', dstCid: 'some-peer' },
    ];
    for (const q of rejected) for (let i = 0; i < 5; i++) await task(q);
    assert.equal(await failures('cdn'), before.cdn, 'no cdn failure counted for rejected reports');
    assert.equal(await failures('peer'), before.peer, 'no peer failure counted for rejected reports');
    // A registered peer's failed piece counts, once.
    await task({ taskId: id, srcCid: 'reporter', range, result: '500', dstCid: e.sched.cdnCid });
    assert.equal(await failures('cdn'), before.cdn + 1);
  });
});
