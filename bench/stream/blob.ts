// A random (incompressible) blob written to a file and pushed to the registry by digest.
import { createCipheriv, createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { pushBlob } from '../../test/fixtures/image.js';

const CHUNK = 1 << 20;

export interface BenchBlob {
  path: string;
  digest: string;
  size: number;
}

/** AES-CTR keystream: fast, deterministic for a seed, and not compressible. */
export async function writeBlob(path: string, size: number, seed: string): Promise<BenchBlob> {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const hash = createHash('sha256');
  const out = createWriteStream(path);
  const zeros = Buffer.alloc(CHUNK);
  for (let left = size; left > 0; left -= CHUNK) {
    const chunk = cipher.update(left >= CHUNK ? zeros : zeros.subarray(0, left));
    hash.update(chunk);
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return { path, digest: `sha256:${hash.digest('hex')}`, size };
}

export async function pushBenchBlob(registryUrl: string, repo: string, blob: BenchBlob): Promise<void> {
  await pushBlob(registryUrl, repo, { digest: blob.digest, size: blob.size, path: blob.path });
}
