// Our supernode answers "limited" (601 without pieces) while it counts this peer's download
// slots as full. When none of those pieces is running here (an answer that never arrived), no
// completion will come to trigger the next request: the session must ask again by itself
// instead of sitting idle until the 30 s stall watchdog sends the blob to the origin.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { p2pDownload } from '../dfdaemon/peer/p2p-download.js';
import type { PieceClient } from '../dfdaemon/peer/piece-client.js';
import type { SupernodeClient } from '../dfdaemon/peer/supernode-client.js';
import type { TaskAnswer } from '../dfdaemon/peer/supernode-wire.js';
import type { TaskFile } from '../dfdaemon/store/task-file.js';
import { createLogger } from '../shared/log/index.js';

describe('p2pDownload told "limited" with nothing running', () => {
  it('asks again by itself', async () => {
    const calls: number[] = [];
    const t0 = Date.now();
    const client = {
      next(_node: string, _q: unknown, signal?: AbortSignal): Promise<TaskAnswer> {
        calls.push(Date.now() - t0);
        if (calls.length === 1) return Promise.resolve({ code: 601, msg: 'peer download limit reached' } as TaskAnswer);
        // Later polls park until the session ends.
        return new Promise((_r, reject) => signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));
      },
    } as unknown as SupernodeClient;
    const tf = { complete: false, completedPieces: 0, layout: { count: 2 }, has: () => false, on() {}, off() {} } as unknown as TaskFile;
    const stop = new AbortController();
    const run = p2pDownload({
      client,
      node: 'sn',
      taskId: 't',
      cid: 'c',
      tf,
      pieces: {} as PieceClient,
      busyReports: true,
      log: createLogger('test', { level: 'silent' }),
      signal: stop.signal,
    });
    await sleep(2_500);
    stop.abort(new Error('test over'));
    await assert.rejects(run, /test over/);
    assert.ok(calls.length >= 2, `asked ${calls.length} time(s) in 2.5 s`);
    assert.ok(calls[1] >= 500, 'not in a tight loop');
  });

  it('gives back, as busy with status 702, pieces handed to it after it ended', async () => {
    const queries: Array<Record<string, unknown>> = [];
    let answerFirst: (a: TaskAnswer) => void = () => undefined;
    const client = {
      next(_node: string, q: Record<string, unknown>): Promise<TaskAnswer> {
        queries.push(q);
        // The first request is still out when the session ends; its answer comes after.
        if (queries.length === 1) return new Promise((r) => (answerFirst = r));
        return Promise.resolve({ code: 602 } as TaskAnswer);
      },
    } as unknown as SupernodeClient;
    // The session ends (here: the file completed by another download) with a request still out.
    let completed: () => void = () => undefined;
    const tf = { complete: false, completedPieces: 0, layout: { count: 2 }, has: () => false, on: (_e: string, f: () => void) => (completed = f), off() {} } as unknown as TaskFile;
    const run = p2pDownload({ client, node: 'sn', taskId: 't', cid: 'c', tf, pieces: {} as PieceClient, busyReports: true, log: createLogger('test', { level: 'silent' }) });
    await sleep(50);
    completed();
    await run;
    answerFirst({ code: 601, data: [{ range: '0-99', pieceNum: 0, cid: 'cdnnode:x' }, { range: '100-199', pieceNum: 1, cid: 'peer-b' }] } as unknown as TaskAnswer);
    await sleep(50);
    const back = queries.slice(1);
    assert.deepEqual(
      back.map((q) => [q.status, q.result, q.range, q.dstCid]),
      [
        [702, 502, '0-99', 'cdnnode:x'],
        [702, 502, '100-199', 'peer-b'],
      ],
    );
  });
});
