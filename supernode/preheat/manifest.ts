/**
 * Pure registry-manifest logic: which URL names which repository, what a manifest refers to,
 * and which children of an index to follow. No I/O.
 */

/** A job failure whose message is shown to Harbor as the job's error. */
export class PreheatFailure extends Error {
  override name = 'PreheatFailure';
}

export const MediaType = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
} as const;

/** Every Docker and OCI manifest type: without the OCI ones a registry answers MANIFEST_UNKNOWN for OCI images. */
export const MANIFEST_ACCEPT = [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerList, MediaType.dockerManifest].join(', ');

/** Layers the registry does not hold (Windows base layers and the like): nobody pulls them from it. */
const NON_DISTRIBUTABLE = /^application\/vnd\.(?:docker\.image\.rootfs\.foreign\.diff\.tar\.gzip|oci\.image\.layer\.nondistributable\.)/;

const DIGEST = /^(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/;
const REPO = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;

export interface ManifestTarget {
  /**
   * `<scheme>://<host>[:port]` as a URL writes it, lower-case and without a default port (plus
   * any path prefix before /v2/): how a dfdaemon's hijacked or mirrored request spells it, so
   * Harbor's `https://Harbor.test:443/...` preheats the tasks those pulls use.
   */
  base: string;
  repo: string;
  /** Tag or digest. */
  reference: string;
}

/** Splits `<scheme>://<host>/v2/<repo>/manifests/<ref>`; throws PreheatFailure on anything else. */
export function parseManifestUrl(url: string): ManifestTarget {
  const m = /^(https?:\/\/[^/?#@]+)((?:\/[^?#]*)?)$/i.exec(url);
  const path = m === null ? null : /^(.*?)\/v2\/(.+)\/manifests\/([^/]+)$/.exec(m[2]);
  if (m === null || path === null) {
    throw new PreheatFailure(`url ${JSON.stringify(url)} is not an image manifest URL (http(s)://<registry>/v2/<repository>/manifests/<tag or digest>)`);
  }
  const [, prefix, repo, reference] = path;
  if (!REPO.test(repo)) throw new PreheatFailure(`url ${JSON.stringify(url)}: ${JSON.stringify(repo)} is not a repository name`);
  if (!TAG.test(reference) && !DIGEST.test(reference)) {
    throw new PreheatFailure(`url ${JSON.stringify(url)}: ${JSON.stringify(reference)} is neither a tag nor a digest`);
  }
  let origin: string;
  try {
    origin = new URL(m[1]).origin;
  } catch {
    throw new PreheatFailure(`url ${JSON.stringify(url)}: ${JSON.stringify(m[1])} is not a registry address`);
  }
  return { base: origin + prefix, repo, reference };
}

export const manifestUrl = (t: ManifestTarget, reference: string): string => `${t.base}/v2/${t.repo}/manifests/${reference}`;

/** The URL a dfdaemon sees for this blob, so that both compute one task ID. */
export const blobUrl = (t: ManifestTarget, digest: string): string => `${t.base}/v2/${t.repo}/blobs/${digest}`;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ChildRef {
  digest: string;
  mediaType: string;
  platform?: Platform;
}

export interface BlobRef {
  digest: string;
  mediaType: string;
}

export type Manifest = { kind: 'index'; children: ChildRef[] } | { kind: 'image'; blobs: BlobRef[]; skipped: number };

interface Descriptor {
  mediaType?: unknown;
  digest?: unknown;
  platform?: unknown;
}

function descriptor(d: unknown, where: string): { digest: string; mediaType: string; platform?: Platform } {
  const x = (typeof d === 'object' && d !== null ? d : {}) as Descriptor;
  if (typeof x.digest !== 'string' || !DIGEST.test(x.digest)) {
    throw new PreheatFailure(`${where} has no valid digest (${JSON.stringify(x.digest ?? null)})`);
  }
  const p = x.platform as Partial<Platform> | undefined;
  const platform = p && typeof p.os === 'string' && typeof p.architecture === 'string'
    ? { os: p.os, architecture: p.architecture, ...(typeof p.variant === 'string' ? { variant: p.variant } : {}) }
    : undefined;
  return { digest: x.digest, mediaType: typeof x.mediaType === 'string' ? x.mediaType : '', platform };
}

/** Parses a manifest body: an index (list) or an image manifest (schema2, OCI, or schema1's fsLayers). */
export function parseManifest(body: Buffer, contentType: string): Manifest {
  let doc: Record<string, unknown>;
  try {
    const v: unknown = JSON.parse(body.toString('utf8'));
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    doc = v as Record<string, unknown>;
  } catch {
    throw new PreheatFailure(`the registry answered with ${contentType || 'no content type'}, which is not a JSON manifest`);
  }
  const type = typeof doc.mediaType === 'string' && doc.mediaType !== '' ? doc.mediaType : contentType.split(';')[0].trim();
  if (Array.isArray(doc.manifests)) {
    return { kind: 'index', children: doc.manifests.map((d, i) => descriptor(d, `manifests[${i}]`)) };
  }
  if (Array.isArray(doc.layers) || (typeof doc.config === 'object' && doc.config !== null)) {
    const layers = Array.isArray(doc.layers) ? doc.layers : [];
    const all = [
      ...(doc.config === undefined ? [] : [descriptor(doc.config, 'config')]),
      ...layers.map((d, i) => descriptor(d, `layers[${i}]`)),
    ];
    const kept = all.filter((b) => !NON_DISTRIBUTABLE.test(b.mediaType));
    return { kind: 'image', blobs: kept.map(({ digest, mediaType }) => ({ digest, mediaType })), skipped: all.length - kept.length };
  }
  if (doc.schemaVersion === 1 && Array.isArray(doc.fsLayers)) {
    const sums = doc.fsLayers.map((l, i) => descriptor({ digest: (l as { blobSum?: unknown } | null)?.blobSum }, `fsLayers[${i}]`));
    return { kind: 'image', blobs: sums.map((s) => ({ digest: s.digest, mediaType: '' })), skipped: 0 };
  }
  throw new PreheatFailure(`unsupported manifest media type ${JSON.stringify(type || 'unknown')}: expected a Docker or OCI image manifest or index`);
}

export const platformName = (p: Platform): string => [p.os, p.architecture, p.variant].filter((s) => s !== undefined && s !== '').join('/');

/** arm64's variant is v8 when unset, so `linux/arm64` and `linux/arm64/v8` are one platform. */
function normalise(p: string): string {
  return p.replace(/^([^/]+\/arm64)\/v8$/, '$1');
}

/** Whether `p` is one of `wanted` (`os/arch` matches any variant; `os/arch/variant` only that one). */
export function platformWanted(p: Platform, wanted: readonly string[]): boolean {
  const name = normalise(platformName(p));
  return wanted.some((w) => {
    const n = normalise(w);
    return n === name || (n.split('/').length === 2 && name.startsWith(`${n}/`));
  });
}

/**
 * The children of an index to preheat. With no wanted platforms: every child except attestation
 * and other `unknown/unknown` entries, which no runtime pulls.
 */
export function selectChildren(children: readonly ChildRef[], wanted: readonly string[]): ChildRef[] {
  const runnable = children.filter((c) => c.platform === undefined || c.platform.os !== 'unknown');
  if (wanted.length === 0) return runnable;
  const chosen = runnable.filter((c) => c.platform !== undefined && platformWanted(c.platform, wanted));
  if (chosen.length === 0) {
    const have = runnable.map((c) => (c.platform ? platformName(c.platform) : 'no platform')).join(', ');
    throw new PreheatFailure(`no manifest in the index is for ${wanted.join(', ')} (it has ${have || 'none'})`);
  }
  return chosen;
}
