import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { BufferPool, BufferRing } from '../shared/io/buffer-ring.js';

/** A Writable that, like a response whose peer just hung up, never calls a write's callback. */
function swallowing(): Writable {
  return new Writable({ write: () => undefined });
}

describe('BufferRing', () => {
  it('a write whose callback never comes settles when the stream closes, so take, end and release return', async () => {
    const out = swallowing();
    const pool = new BufferPool(16, 4);
    const ring = new BufferRing(out, 2, 16, pool);
    const used: Buffer[] = [];
    for (let i = 0; i < 2; i++) {
      const b = await ring.take();
      used.push(b);
      ring.write(b.subarray(0, 8));
    }
    const next = ring.take();
    let settled = false;
    next.then(
      () => (settled = true),
      () => (settled = true),
    );
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(settled, false, 'the first slot is still held by its unfinished write');
    out.destroy();
    await assert.rejects(next, /closed/);
    await assert.rejects(ring.end(), /closed/);
    await ring.release();
    const back = [pool.get(), pool.get()];
    assert.ok(back.every((b) => used.includes(b)), 'both buffers went back to the pool');
  });

  it('a ring made on a stream that already closed fails its first write instead of hanging', async () => {
    const out = swallowing();
    out.destroy();
    await new Promise((r) => setImmediate(r));
    const ring = new BufferRing(out, 1, 16);
    ring.write((await ring.take()).subarray(0, 4));
    await assert.rejects(ring.take(), /closed|destroyed/);
  });

  it('a stream that takes every write ends normally', async () => {
    const got: Buffer[] = [];
    const out = new Writable({
      write(chunk: Buffer, _e, cb) {
        got.push(Buffer.from(chunk));
        setImmediate(cb);
      },
    });
    const ring = new BufferRing(out, 2, 4);
    for (const s of ['abcd', 'efgh', 'ij']) {
      const b = await ring.take();
      const n = b.write(s);
      ring.write(b.subarray(0, n));
    }
    await ring.end();
    assert.equal(Buffer.concat(got).toString(), 'abcdefghij');
  });
});
