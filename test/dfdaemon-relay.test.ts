// Cut-through: a dfdaemon passes on a piece it is still receiving, sends the piece's last byte
// only once it verified the piece itself, and cuts the downstream off when its own fetch fails.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fetchPiece, PieceFetchError } from '../dfdaemon/peer/fetch-piece.js';
import { PieceClient } from '../dfdaemon/peer/piece-client.js';
import { PieceStore } from '../dfdaemon/store/piece-store.js';
import type { TaskFile } from '../dfdaemon/store/task-file.js';
import { createUploader, handleUpload } from '../dfdaemon/uploader/uploader.js';
import { defaultPiecePaths } from '../dfdaemon/uploader/piece-path.js';
import { createLogger } from '../shared/log/index.js';
import { Layout, MiB, rangeString, WRAP_OVERHEAD, WRAP_TAIL } from '../shared/protocol/pieces.js';
import { TokenBucket } from '../shared/ratelimit/token-bucket.js';

const quiet = createLogger('test', { level: 'silent' });
const PIECE = MiB;
const CONTENT = PIECE - WRAP_OVERHEAD;

function listen(server: Server): Promise<number> {
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r((server.address() as AddressInfo).port)));
}

/** A peer: a store with one task of one piece, and its uploader on a port. */
async function peer(dir: string, name: string, bucket?: TokenBucket): Promise<{ tf: TaskFile; port: number; close(): Promise<void> }> {
  const store = new PieceStore(join(dir, name), () => Date.now());
  const tf = await store.open('t', new Layout(CONTENT, PIECE));
  const server = createServer((req, res) => void handleUpload(req, res, createUploader({ store, log: quiet, bucket })));
  const port = await listen(server);
  return {
    tf,
    port,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await store.close();
    },
  };
}

/** GET piece 0 raw; resolves as it ends, and reports progress through `seen`. */
function getPiece(port: number, seen: Seen): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const req = httpRequest({ host: '127.0.0.1', port, path: defaultPiecePaths().path('t'), headers: { range: `bytes=0-${PIECE - 1}`, pieceNum: '0', pieceSize: String(PIECE) } }, (res) => {
      assert.equal(res.statusCode, 206);
      seen.relayed = res.headers['x-dragonfly-relay'] === '1';
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        seen.bytes += c.length;
      });
      res.on('end', () => {
        seen.ended = 'complete';
        resolve(Buffer.concat(chunks));
      });
      res.on('error', () => undefined);
      res.on('close', () => {
        if (!seen.ended) seen.ended = 'cut';
        resolve(Buffer.concat(chunks));
      });
    });
    req.on('error', () => {
      seen.ended ??= 'cut';
      resolve(Buffer.concat(chunks));
    });
    req.end();
  });
}

/** Piece 0 of task `t`, with `content`'s digest, as the supernode would hand it out for `port`. */
function wirePiece(content: Buffer, port: number, cid: string) {
  return {
    range: rangeString(new Layout(CONTENT, PIECE).piece(0)),
    pieceNum: 0,
    pieceSize: PIECE,
    pieceMd5: '',
    pieceSha256: createHash('sha256').update(content).digest('hex'),
    cid,
    peerIp: '127.0.0.1',
    peerPort: port,
    path: defaultPiecePaths().path('t'),
  };
}

type Seen = { bytes: number; ended?: 'complete' | 'cut'; relayed?: boolean };

/** A fetch of piece 0 that has written the first `written` bytes of `content`, and a GET of it. */
async function relayMidway(p: { tf: TaskFile; port: number }, content: Buffer, written: number) {
  const prog = p.tf.startPiece(0);
  await p.tf.writeAt(content.subarray(0, written), 0);
  prog.advance(written);
  const seen: Seen = { bytes: 0 };
  return { prog, seen, body: getPiece(p.port, seen) };
}

describe('cut-through relay in the uploader', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-relay-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('serves a piece as it is written and sends its last byte only once it verified', async () => {
    const p = await peer(dir, 'a');
    try {
      const content = Buffer.alloc(CONTENT, 7);
      const { prog, seen, body } = await relayMidway(p, content, 300_000);
      await sleep(200);
      assert.equal(seen.bytes, 4 + 300_000, 'the header and what is written so far, nothing more');
      assert.equal(seen.relayed, true, 'marked as relayed, so the fetcher does not judge its pace');
      assert.equal(prog.readers, 1);
      await p.tf.writeAt(content.subarray(300_000), 300_000);
      prog.advance(CONTENT - 300_000);
      await sleep(200);
      assert.equal(seen.bytes, 4 + CONTENT, 'all content, but not the tail before the piece verified');
      assert.equal(seen.ended, undefined);
      p.tf.markDone(0);
      p.tf.endPiece(0, prog, true);
      const got = await body;
      assert.equal(seen.ended, 'complete');
      assert.equal(got.length, PIECE);
      assert.ok(got.subarray(4, 4 + CONTENT).equals(content));
      assert.equal(got[PIECE - 1], WRAP_TAIL);
    } finally {
      await p.close();
    }
  });

  it('cuts the downstream off when the fetch it relays fails, and refuses a piece nobody is fetching', async () => {
    const p = await peer(dir, 'b');
    try {
      const { prog, seen, body } = await relayMidway(p, Buffer.alloc(CONTENT, 1), 100_000);
      await sleep(150);
      p.tf.endPiece(0, prog, false);
      const got = await body;
      assert.equal(seen.ended, 'cut');
      assert.ok(got.length < PIECE);
      const res = await fetch(`http://127.0.0.1:${p.port}${defaultPiecePaths().path('t')}`, { headers: { range: `bytes=0-${PIECE - 1}`, pieceNum: '0', pieceSize: String(PIECE) } });
      assert.equal(res.status, 404, 'after the failure nothing is relayed');
      await res.arrayBuffer();
    } finally {
      await p.close();
    }
  });

  it('a request that overtakes the relay\'s own start waits for it', async () => {
    const p = await peer(dir, 'r');
    try {
      const content = Buffer.alloc(CONTENT, 9);
      const seen: Seen = { bytes: 0 };
      const body = getPiece(p.port, seen);
      await sleep(300);
      const prog = p.tf.startPiece(0);
      await p.tf.writeAt(content, 0);
      prog.advance(CONTENT);
      p.tf.markDone(0);
      p.tf.endPiece(0, prog, true);
      const got = await body;
      assert.equal(seen.ended, 'complete');
      assert.ok(got.subarray(4, 4 + CONTENT).equals(content));
    } finally {
      await p.close();
    }
  });

  it('a second fetch of a piece waits for the first, so a bad source cannot overwrite verified bytes', async () => {
    // The supernode hands a piece out again after its timeout while the first fetch still runs.
    const good = await peer(dir, 'dg', new TokenBucket(2 * MiB));
    const bad = await peer(dir, 'db');
    const r = await peer(dir, 'dr');
    const client = new PieceClient();
    try {
      const content = Buffer.alloc(CONTENT, 7);
      await good.tf.writeAt(content, 0);
      good.tf.markDone(0);
      await bad.tf.writeAt(Buffer.alloc(CONTENT, 0x55), 0);
      bad.tf.markDone(0);
      const wire = (port: number, cid: string) => wirePiece(content, port, cid);
      const first = fetchPiece(wire(good.port, 'good'), r.tf, { client });
      await sleep(150);
      await fetchPiece(wire(bad.port, 'bad'), r.tf, { client });
      await first;
      assert.ok(r.tf.has(0));
      const disk = Buffer.alloc(CONTENT);
      await r.tf.readAt(disk, 0);
      assert.ok(disk.equals(content), 'the verified bytes are on disk');
    } finally {
      client.close();
      for (const p of [good, bad, r]) await p.close();
    }
  });

  it('refuses a piece the supernode gave no digest for, and marks nothing', async () => {
    const src = await peer(dir, 'nd-src');
    const r = await peer(dir, 'nd-r');
    const client = new PieceClient();
    try {
      const content = Buffer.alloc(CONTENT, 3);
      await src.tf.writeAt(content, 0);
      src.tf.markDone(0);
      const undigested = { ...wirePiece(content, src.port, 'src'), pieceSha256: '', pieceMd5: '' };
      await assert.rejects(fetchPiece(undigested, r.tf, { client }), (err) => err instanceof PieceFetchError && err.errorType === 'FILE_MD5_NOT_MATCH');
      assert.equal(r.tf.has(0), false);
      // The same piece with its digest is taken.
      await fetchPiece(wirePiece(content, src.port, 'src'), r.tf, { client });
      assert.equal(r.tf.has(0), true);
    } finally {
      client.close();
      for (const p of [src, r]) await p.close();
    }
  });

  it('a chain A -> B -> C: C verifies the piece while B still receives it from a slow A', async () => {
    // A holds the piece and sends at 2 MiB/s, so B's fetch takes ~0.5 s.
    const a = await peer(dir, 'ca', new TokenBucket(2 * MiB));
    const b = await peer(dir, 'cb');
    const c = await peer(dir, 'cc');
    const client = new PieceClient();
    try {
      const content = Buffer.alloc(CONTENT);
      for (let i = 0; i + 4 <= CONTENT; i += 4) content.writeUInt32BE(i, i);
      await a.tf.writeAt(content, 0);
      a.tf.markDone(0);
      const wire = (port: number, cid: string) => wirePiece(content, port, cid);
      const bDone = fetchPiece(wire(a.port, 'a'), b.tf, { client }).then(() => performance.now());
      await sleep(100);
      assert.ok(b.tf.receiving(0), 'B is mid-piece');
      const t0 = performance.now();
      const cDone = fetchPiece(wire(b.port, 'b'), c.tf, { client }).then(() => performance.now());
      // A raw reader beside C shows bytes flowing out of B while B still receives them.
      const seen: Seen = { bytes: 0 };
      const raw = getPiece(b.port, seen);
      let whileReceiving = 0;
      while (b.tf.receiving(0)) {
        whileReceiving = seen.bytes;
        await sleep(20);
      }
      assert.ok(whileReceiving > 256 * 1024, `${whileReceiving} bytes left B before B had the piece`);
      assert.equal((await raw).length, PIECE);
      const bAt = await bDone;
      const cAt = await cDone;
      assert.ok(c.tf.has(0) && b.tf.has(0));
      assert.ok(cAt - bAt < 200, `C completed ${(cAt - bAt).toFixed(0)} ms after B: it was fed as B received`);
      assert.ok(cAt - t0 > 250, 'C could not have had the piece whole from B at the start');
      const onDisk = Buffer.alloc(CONTENT);
      await c.tf.readAt(onDisk, 0);
      assert.ok(onDisk.equals(content));
    } finally {
      client.close();
      for (const p of [a, b, c]) await p.close();
    }
  });
});
