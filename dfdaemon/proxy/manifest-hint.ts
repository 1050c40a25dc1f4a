import type { IncomingMessage } from 'node:http';
import type { ProxyRule } from '../../shared/config/dfdaemon.js';
import type { Logger } from '../../shared/log/index.js';
import type { DownloadRequest, Downloader } from '../peer/downloader.js';
import { forwardHeaders } from './p2p-handler.js';
import type { PassOptions } from './passthrough.js';
import { routeAbsolute } from './router.js';

const MANIFEST_PATH = /^\/v2\/(.+)\/manifests\/[^/]+$/;
const IMAGE_MANIFEST = /application\/vnd\.(docker\.distribution\.manifest\.v2|oci\.image\.manifest\.v1)\+json/;
const MAX_MANIFEST = 1024 * 1024;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** True for a GET of a manifest: its answer may list the blobs the client asks for next. */
export function isManifestGet(url: string, method: string): boolean {
  return method === 'GET' && MANIFEST_PATH.test(new URL(url).pathname);
}

/**
 * Once an image manifest (not a list: the platform is the client's choice) has come back
 * through the proxy, tell the supernode which blobs it names, so its CDN can fetch them while
 * its source link is idle (supernode/service/prefetcher.ts). Nothing is downloaded to this
 * host: Docker skips the layers it has, and only it knows which those are.
 */
export function hintListedBlobs(res: IncomingMessage, req: IncomingMessage, url: string, tls: PassOptions, rules: readonly ProxyRule[], downloader: Downloader, log: Logger): void {
  if ((res.statusCode ?? 0) !== 200 || !IMAGE_MANIFEST.test(String(res.headers['content-type'] ?? ''))) return;
  const chunks: Buffer[] = [];
  let size = 0;
  res.on('data', (c: Buffer) => {
    size += c.length;
    if (size <= MAX_MANIFEST) chunks.push(c);
  });
  res.once('end', () => {
    if (size > MAX_MANIFEST) return;
    let m: { config?: { digest?: unknown }; layers?: { digest?: unknown }[] };
    try {
      m = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof m;
    } catch {
      return;
    }
    const u = new URL(url);
    const repo = MANIFEST_PATH.exec(u.pathname)![1];
    const headers = forwardHeaders(req.headers);
    delete headers.Accept;
    const reqs: DownloadRequest[] = [];
    const layers = Array.isArray(m.layers) ? m.layers : [];
    // Layers in the manifest's order (the order serial clients fetch them in), the config last.
    for (const d of [...layers.map((l) => l?.digest), m.config?.digest]) {
      if (typeof d !== 'string' || !DIGEST.test(d)) continue;
      const route = routeAbsolute(`${u.origin}/v2/${repo}/blobs/${d}`, 'GET', rules);
      if (route.kind === 'p2p') reqs.push({ url: route.url, headers, insecure: tls.insecure, ca: tls.ca });
    }
    if (reqs.length > 0) downloader.hint(reqs).catch((err: Error) => log.debug({ url, err: err.message }, 'prefetch hint failed'));
  });
}
