// A stock supernode names every piece by its full size, the short last one too. Stock dfget's
// uploader clamps such a range to the data it has (RFC 7233 does the same for an end past EOF);
// ours must serve it, or a stock peer in a mixed swarm fails every last piece fetched from us.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { PieceStore } from '../dfdaemon/store/piece-store.js';
import { defaultPiecePaths } from '../dfdaemon/uploader/piece-path.js';
import { createUploader, handleUpload } from '../dfdaemon/uploader/uploader.js';
import { createLogger } from '../shared/log/index.js';
import { Layout, WRAP_OVERHEAD, WRAP_TAIL, wrapHeader } from '../shared/protocol/pieces.js';

const quiet = createLogger('test', { level: 'silent' });
const PIECE = 64 * 1024;

describe('uploader: ranges as a stock supernode gives them', () => {
  let dir: string;
  let store: PieceStore;
  let server: Server;
  let base: string;
  // Three full pieces and a 1000-byte last one.
  const blob = randomBytes(3 * (PIECE - WRAP_OVERHEAD) + 1000);
  const layout = new Layout(blob.length, PIECE);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-peer-range-'));
    store = new PieceStore(dir, () => Date.now());
    const tf = await store.open('t', layout);
    await tf.writeAt(blob, 0);
    for (let n = 0; n < layout.count; n++) tf.markDone(n);
    const up = createUploader({ store, log: quiet });
    server = createServer((req, res) => void handleUpload(req, res, up));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}${defaultPiecePaths().path('t')}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const get = async (start: number, end: number, pieceNum: number) => {
    const res = await request(base, { headers: { range: `bytes=${start}-${end}`, piecenum: String(pieceNum), piecesize: String(PIECE) } });
    return { status: res.statusCode, length: res.headers['content-length'], body: Buffer.from(await res.body.arrayBuffer()) };
  };

  it('the short last piece asked with its full-size range: 206 with the piece as it is', async () => {
    const n = layout.count - 1;
    const last = layout.piece(n);
    assert.equal(last.contentLen, 1000);
    const r = await get(n * PIECE, n * PIECE + PIECE - 1, n);
    assert.equal(r.status, 206);
    assert.equal(r.body.length, last.contentLen + WRAP_OVERHEAD);
    assert.equal(r.length, String(last.contentLen + WRAP_OVERHEAD));
    assert.deepEqual(r.body.subarray(0, 4), wrapHeader(last.contentLen, PIECE), 'header carries the real content length');
    assert.deepEqual(r.body.subarray(4, -1), blob.subarray(last.rawStart));
    assert.equal(r.body[r.body.length - 1], WRAP_TAIL);
  });

  it('a full piece and the exact last range are unchanged; a start past the data is still 416', async () => {
    const full = await get(PIECE, 2 * PIECE - 1, 1);
    assert.equal(full.status, 206);
    assert.equal(full.body.length, PIECE);
    const n = layout.count - 1;
    const exact = await get(n * PIECE, layout.piece(n).end, n);
    assert.equal(exact.status, 206);
    assert.equal(exact.body.length, 1000 + WRAP_OVERHEAD);
    // The piece after the last: its start is past the data.
    const past = await get(layout.count * PIECE, layout.count * PIECE + PIECE - 1, layout.count);
    assert.equal(past.status, 416);
  });
});
