import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { filterUrl, taskId } from '../shared/protocol/taskid.js';
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
});
