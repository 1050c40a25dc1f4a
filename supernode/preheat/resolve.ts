import { createHash } from 'node:crypto';
import {
  blobUrl, manifestUrl, parseManifest, PreheatFailure, selectChildren, type ManifestTarget,
} from './manifest.js';
import type { RegistryClient } from './registry-client.js';

export interface BlobToCache {
  url: string;
  digest: string;
}

export interface ResolvedImage {
  blobs: BlobToCache[];
  /** Manifests read (the top one and the children followed). */
  manifests: number;
  /** Non-distributable layers left out. */
  skipped: number;
}

/** OCI allows an index inside an index; real images go one level deep. */
const MAX_DEPTH = 3;
/**
 * Manifests and blobs one job may name. A multi-arch image of 10 platforms with 100 layers each
 * is 1,000 blobs; past this a "manifest" is a mistake or an attack on the supernode.
 */
export const MAX_MANIFESTS = 256;
export const MAX_BLOBS = 10_000;

function verify(body: Buffer, digest: string, url: string): void {
  const [alg, hex] = digest.split(':');
  const actual = createHash(alg).update(body).digest('hex');
  if (actual !== hex) throw new PreheatFailure(`manifest ${url} does not match its digest ${digest} (got ${alg}:${actual})`);
}

/**
 * Reads the manifest at `target` and every child it must follow, and lists the blobs (config and
 * layers) to cache, each once, as blob URLs on the same scheme and host as the manifest URL.
 */
export async function resolveImage(client: RegistryClient, target: ManifestTarget, platforms: readonly string[], expectDigest = ''): Promise<ResolvedImage> {
  const blobs = new Map<string, BlobToCache>();
  let manifests = 0;
  let skipped = 0;
  const visit = async (reference: string, depth: number): Promise<void> => {
    const url = manifestUrl(target, reference);
    const got = await client.manifest(url, target.repo);
    if (++manifests > MAX_MANIFESTS) throw new PreheatFailure(`${target.repo} lists more than ${MAX_MANIFESTS} manifests`);
    if (reference.includes(':')) verify(got.body, reference, url);
    const m = parseManifest(got.body, got.contentType);
    if (m.kind === 'image') {
      skipped += m.skipped;
      for (const b of m.blobs) if (!blobs.has(b.digest)) blobs.set(b.digest, { url: blobUrl(target, b.digest), digest: b.digest });
      if (blobs.size > MAX_BLOBS) throw new PreheatFailure(`${target.repo} lists more than ${MAX_BLOBS} blobs`);
      return;
    }
    if (depth >= MAX_DEPTH) throw new PreheatFailure(`manifest ${url} nests indexes more than ${MAX_DEPTH} deep`);
    // Children one after another: an index has a handful, and the order keeps the job's list stable.
    for (const child of selectChildren(m.children, platforms)) await visit(child.digest, depth + 1);
  };
  // A digest from the caller (Harbor v1, a push event) names the content to warm, and lets a
  // later identical request answer 208: read that manifest, not whatever the tag names by now.
  await visit(expectDigest || target.reference, 1);
  return { blobs: [...blobs.values()], manifests, skipped };
}
