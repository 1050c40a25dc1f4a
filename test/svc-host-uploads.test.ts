// A dfdaemon registers every task under one cid and serves them all from one upload budget. The
// supernode must count that host's uploads over all its tasks: a second host pulling an image's
// layers is sent to the first for at most peerUpLimit pieces at once, and to the CDN for the rest.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { waitFor } from './fixtures/proc.js';
import { randomBlob } from './helpers/origin.js';
import { registerPeer, useOrigin } from './helpers/sn-fixture.js';

interface Piece {
  range: string;
  cid: string;
}
interface Answer {
  code: number;
  data?: Piece[];
}

describe('one host\'s uploads counted over all its tasks', () => {
  const ctx = useOrigin('svc-host-up', '');

  // Until TaskService.attach passes this.peers.uploads to newTask, each task counts alone.
  it('a holder of three layers is handed at most peerUpLimit uploads in all; the CDN sends the rest', async () => {
    const ask = async (taskId: string, cid: string, report = ''): Promise<Answer> =>
      (await (await request(`${ctx.api}/peer/task?taskId=${taskId}&srcCid=${cid}&status=701${report}`)).body.json()) as Answer;
    const reg = (url: string, cid: string, ip: string) => registerPeer(ctx.api, { rawUrl: url, cid, ip, port: 15005, path: `/peer/file/${cid}` });
    // 1 MiB layers: four 256 KiB pieces each.
    const urls = [1, 2, 3].map(() => ctx.origin.blobUrl(ctx.origin.add(randomBlob(1024 * 1024))));
    const taskIds: string[] = [];
    for (const url of urls) {
      const r = await reg(url, 'holder', '127.0.0.51');
      assert.equal(r.code, 200);
      taskIds.push(r.taskId);
      await waitFor(() => ctx.sn.cdn.get(r.taskId)?.status === 'SUCCESS');
      // The holder fetches every piece (from the CDN) and reports each one.
      let got = await ask(r.taskId, 'holder');
      const todo: Piece[] = [];
      while (got.code === 601 || todo.length > 0) {
        if (got.code === 601 && got.data) todo.push(...got.data);
        const p = todo.shift()!;
        got = await ask(r.taskId, 'holder', `&range=${p.range}&result=501&dstCid=${encodeURIComponent(p.cid)}`);
      }
      assert.equal(got.code, 600, 'the holder has the whole layer');
    }
    const srcs: string[] = [];
    for (const [i, url] of urls.entries()) {
      assert.equal((await reg(url, 'second', '127.0.0.52')).code, 200);
      const got = await ask(taskIds[i], 'second');
      assert.equal(got.code, 601);
      srcs.push(...got.data!.map((p) => p.cid));
    }
    assert.equal(srcs.length, 12, srcs.join(' '));
    // Counted per task, each layer saw a holder with 5 free slots: all 12 went to it.
    assert.equal(srcs.filter((s) => s === 'holder').length, 5, srcs.join(' '));
    assert.equal(srcs.filter((s) => s.startsWith('cdnnode:')).length, 7);
  });
});
