// Micro-benchmark of the dfdaemon piece store's hot path: pieces written and read back in the
// uploader's 256 KiB chunks, over a few large task files (every handle stays open) and over many
// small ones read round-robin (more files than the open-handle cap: the worst case for reopening).
// Run: node dist/bench/store/piece-io.js [rounds]
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Layout } from '../../shared/protocol/pieces.js';
import { PieceStore } from '../../dfdaemon/store/piece-store.js';
import type { TaskFile } from '../../dfdaemon/store/task-file.js';

const KiB = 1024;
const CHUNK = 256 * KiB;
const rounds = Number(process.argv[2] ?? 5);

async function scenario(name: string, files: number, size: number, passes: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'dfts-bench-store-'));
  const store = new PieceStore(dir);
  const data = randomBytes(CHUNK);
  const tfs: TaskFile[] = [];
  let t0 = process.hrtime.bigint();
  for (let i = 0; i < files; i++) {
    const tf = await store.open(randomBytes(32).toString('hex'), new Layout(size, 4 * 1024 * KiB));
    for (let pos = 0; pos < size; pos += CHUNK) await tf.writeAt(data.subarray(0, Math.min(CHUNK, size - pos)), pos);
    tfs.push(tf);
  }
  const writeMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const buf = Buffer.allocUnsafe(CHUNK);
  let ops = 0;
  t0 = process.hrtime.bigint();
  for (let p = 0; p < passes; p++) {
    for (const tf of tfs) {
      for (let pos = 0; pos < size; pos += CHUNK) {
        await tf.readAt(buf.subarray(0, Math.min(CHUNK, size - pos)), pos);
        ops++;
      }
    }
  }
  const readMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const mb = (files * size * passes) / (1024 * KiB);
  console.log(JSON.stringify({ name, files, writeMs: Math.round(writeMs), readMs: Math.round(readMs), readOpsPerSec: Math.round(ops / (readMs / 1000)), readMBps: Math.round(mb / (readMs / 1000)) }));
  await store.close();
  await rm(dir, { recursive: true, force: true });
}

for (let r = 0; r < rounds; r++) {
  await scenario('few large files', 8, 16 * 1024 * KiB, 8);
  await scenario('many small files', 1000, 64 * KiB, 10);
}
