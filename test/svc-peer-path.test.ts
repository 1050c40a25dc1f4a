import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { waitFor } from './fixtures/proc.js';
import { randomBlob } from './helpers/origin.js';
import { useOrigin } from './helpers/sn-fixture.js';

describe("registration: stock dfget's path after the basename of -o", () => {
  const ctx = useOrigin('svc-path', '');

  const register = async (cid: string, path: unknown, rawUrl = ctx.origin.blobUrl(ctx.origin.add(randomBlob(1000)))) => {
    const res = await request(`${ctx.api}/peer/registry`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ rawUrl, cid, ip: '127.0.0.41', port: 15004, path }),
    });
    return { status: res.statusCode, body: (await res.body.json()) as { code: number; msg?: string; data?: { taskId: string } } };
  };

  it('takes a name with a space and CJK, and hands it to other peers escaped; plain ones as before', async () => {
    const url = ctx.origin.blobUrl(ctx.origin.add(randomBlob(2000)));
    const r = await register('cjk', '/peer/file/镜像 1.tar-1-2.3', url);
    assert.deepEqual([r.status, r.body.code], [200, 200], JSON.stringify(r.body));
    const taskId = r.body.data!.taskId;
    await waitFor(() => ctx.sn.cdn.get(taskId)?.status === 'SUCCESS');
    const e = ctx.sn.svc.tasks.get(taskId)!;
    const p = e.cdn.layout!.piece(0);
    ctx.sn.svc.report(taskId, 'cjk', { range: `${p.start}-${p.end}`, result: 501, dstCid: e.sched.cdnCid });
    assert.equal((await register('other', '/peer/file/other-1.2', url)).body.code, 200);
    const a = (await (await request(`${ctx.api}/peer/task?taskId=${taskId}&srcCid=other&status=700`)).body.json()) as { code: number; data: Array<{ cid: string; path: string }> };
    assert.equal(a.code, 601);
    assert.equal(a.data[0].cid, 'cjk');
    assert.equal(a.data[0].path, '/peer/file/%E9%95%9C%E5%83%8F%201.tar-1-2.3');
    assert.equal(decodeURIComponent(a.data[0].path), '/peer/file/镜像 1.tar-1-2.3');
    // Plain names, and no path at all, are taken as before.
    assert.equal((await register('plain', '/peer/file/a.tar-123-4.5')).body.code, 200);
    assert.equal((await register('none', undefined)).body.code, 200);
  });

  const bad: Array<[string, unknown]> = [
    ['a control character', '/peer/file/a\u0001b'],
    ['a newline', '/peer/file/a\nb'],
    ['a line separator', '/peer/file/a\u2028b'],
    ['a dot-dot segment', '/peer/file/../../etc/passwd'],
    ['an escaped dot-dot segment', '/peer/file/%2e%2E/x'],
    ['a path outside /peer/file/', '/etc/passwd'],
    ['no file name', '/peer/file/'],
    ['a lone surrogate', '/peer/file/a\ud800b'],
    ['a very long name', `/peer/file/${'镜'.repeat(1100)}`],
    ['not a string', { a: 1 }],
  ];
  it('refuses, with a 400, a path that leaves /peer/file/ or that no request line can carry', async () => {
    for (const [name, path] of bad) {
      const r = await register(`bad-${name}`, path);
      assert.equal(r.status, 400, `${name}: ${JSON.stringify(r.body)}`);
      assert.match(r.body.msg ?? '', /path/, name);
    }
  });
});
