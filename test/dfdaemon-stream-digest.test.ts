// A blob whose bytes do not match its digest must never reach a client as a complete body: the
// whole-blob sha256 is compared before the last bytes are handed out, so the client sees a short
// body (Content-Length unmet) instead of a finished, corrupt 200.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { Dfdaemon } from '../dfdaemon/daemon.js';
import { orderedStream, pumpBlob } from '../dfdaemon/peer/ordered-stream.js';
import { PieceStore } from '../dfdaemon/store/piece-store.js';
import { isDfError } from '../shared/errors.js';
import { Layout, pieceSizeFor } from '../shared/protocol/pieces.js';
import { dfdaemonAt, metric } from './helpers/cluster.js';
import { startOrigin, type Origin } from './helpers/origin.js';
import { getViaProxy } from './helpers/proxy-get.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const LENGTH = 3 * 1024 * 1024 + 17;

/** A Writable that counts what it was given. */
function sink(): Writable & { bytes: number } {
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      w.bytes += chunk.length;
      cb();
    },
  }) as Writable & { bytes: number };
  w.bytes = 0;
  return w;
}

describe('whole-blob digest before the last byte', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-digest-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A complete task file holding `data`. */
  async function complete(store: PieceStore, id: string, data: Buffer) {
    const layout = new Layout(data.length, pieceSizeFor(data.length));
    const tf = await store.open(id, layout);
    for (let n = 0; n < layout.count; n++) {
      const p = layout.piece(n);
      await tf.writeAt(data.subarray(p.rawStart, p.rawStart + p.contentLen), p.rawStart);
      tf.markDone(n);
    }
    return tf;
  }

  it('pumpBlob withholds the last bytes of a blob that fails its digest', async () => {
    const store = new PieceStore(join(dir, 'pump'));
    try {
      const data = randomBytes(LENGTH);
      const tf = await complete(store, 'bad', data);
      const out = sink();
      await assert.rejects(pumpBlob(tf, out, { expectSha256: sha256(randomBytes(16)) }), (err) => isDfError(err, 'DIGEST_MISMATCH'));
      assert.ok(out.bytes < LENGTH, `the consumer got ${out.bytes} of ${LENGTH} bytes`);
      assert.equal(tf.verified, false);

      const good = await complete(store, 'good', data);
      const all = sink();
      await pumpBlob(good, all, { expectSha256: sha256(data) });
      assert.equal(all.bytes, LENGTH);
      assert.equal(good.verified, true);
    } finally {
      await store.close();
    }
  });

  it('orderedStream (dfget) errors before yielding the last chunk of a mismatching blob', async () => {
    const store = new PieceStore(join(dir, 'ordered'));
    try {
      const tf = await complete(store, 'bad', randomBytes(LENGTH));
      let bytes = 0;
      await assert.rejects(
        (async () => {
          for await (const c of orderedStream(tf, { expectSha256: sha256(randomBytes(16)) })) bytes += (c as Buffer).length;
        })(),
        (err) => isDfError(err, 'DIGEST_MISMATCH'),
      );
      assert.ok(bytes < LENGTH, `the reader got ${bytes} of ${LENGTH} bytes`);
    } finally {
      await store.close();
    }
  });
});

describe('a corrupt blob through the proxy', () => {
  let dir: string;
  let origin: Origin;
  let df: Dfdaemon;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-digest-proxy-'));
    origin = await startOrigin('127.0.0.1');
    // No supernode answers (port 1 refuses), so the blob comes from the origin: the case where
    // no piece digest stands between the origin's bytes and the client.
    df = await dfdaemonAt(dir, '127.0.0.1', ['127.0.0.1:1']);
  });
  after(async () => {
    await df.close();
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('ends the response short, so the client never sees a complete corrupt body', async () => {
    const real = randomBytes(LENGTH);
    const digest = sha256(real);
    // The origin answers for this digest with other bytes of the same length.
    origin.blobs.set(digest, randomBytes(LENGTH));
    const r = await getViaProxy('127.0.0.1', df.port, origin.blobUrl(digest));
    assert.equal(r.status, 200);
    assert.equal(r.complete, false);
    assert.ok(r.bytes < LENGTH, `the client got ${r.bytes} of ${LENGTH} bytes`);
    const text = await (await fetch(`http://127.0.0.1:${df.port}/metrics`)).text();
    assert.equal(metric(text, 'dfdaemon_blob_failures_total', { reason: 'digest' }), 1);
  });
});
