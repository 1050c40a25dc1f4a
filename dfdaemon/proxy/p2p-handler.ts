import type { IncomingMessage, ServerResponse } from 'node:http';
import { isDfError, redactUrl } from '../../shared/errors.js';
import type { BoundedBufferPool } from '../../shared/io/bounded-pool.js';
import { ClientIdleError } from '../../shared/io/pooled-writer.js';
import { hangUpSignal } from '../../shared/http/hang-up.js';
import type { Logger } from '../../shared/log/index.js';
import { blobDigestOf } from '../../shared/protocol/taskid.js';
import type { DfdaemonMetrics } from '../metrics.js';
import type { Downloader } from '../peer/downloader.js';
import { pumpBlob } from '../peer/ordered-stream.js';
import { LocalStorageError } from '../store/disk-error.js';
import type { PieceStore } from '../store/piece-store.js';
import type { TaskFile } from '../store/task-file.js';
import { HOP_BY_HOP } from './hop-by-hop.js';
import type { PassOptions, PassThrough } from './passthrough.js';
import { mayPull } from './pull-check.js';

/** Not forwarded to the supernode: the hop-by-hop ones, and those the CDN's own fetch sets. */
const NOT_FORWARDED = new Set([...HOP_BY_HOP, 'host', 'accept-encoding', 'transfer-encoding']);

/** Request headers as Dragonfly forwards them to the supernode, with canonical names. */
export function forwardHeaders(h: IncomingMessage['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (NOT_FORWARDED.has(k) || v === undefined) continue;
    const name = k.replace(/(^|-)([a-z])/g, (_m, d: string, c: string) => d + c.toUpperCase());
    out[name] = Array.isArray(v) ? v.join(',') : v;
  }
  return out;
}

export interface P2PHandlerDeps {
  downloader: Downloader;
  store: PieceStore;
  passThrough: PassThrough;
  metrics: DfdaemonMetrics;
  log: Logger;
  /** A task file was thrown away: tell its supernode this peer no longer serves it. */
  onDiscard?: (tf: TaskFile) => void;
  /** Read buffers every blob response shares (BLOB_CHUNK each). */
  blobPool?: BoundedBufferPool;
  /** A blob response whose client takes no bytes for this long is cut. */
  blobIdleMs?: number;
}

/**
 * Serve a blob GET through P2P. Until the first byte is sent, any failure falls back to a
 * plain pass-through, so the client sees the origin's own answer (e.g. its 401). After that,
 * a failure aborts the response: with Content-Length set, the client sees a short body.
 */
export async function serveP2P(
  req: IncomingMessage,
  res: ServerResponse,
  url: string,
  tls: PassOptions,
  d: P2PHandlerDeps,
): Promise<void> {
  if (req.headers.range !== undefined) {
    // Docker resumes a broken layer download with Range and insists on a 206. A slice cannot
    // be checked against the blob's digest, and a ranged task would cache a second copy under
    // another ID, so the registry answers resumes itself.
    d.metrics.requests.inc({ route: 'direct' });
    return d.passThrough(req, res, url, tls);
  }
  const headers = forwardHeaders(req.headers);
  const check = await mayPull(url, headers, tls).catch((err: Error) => ({ ok: false, status: 0, err }));
  if (!check.ok) {
    // Let the registry answer the client itself (its 401 challenge, its 404).
    d.log.info({ url: redactUrl(url), status: check.status }, 'registry refused this client the blob; passing through');
    d.metrics.requests.inc({ route: 'direct' });
    return d.passThrough(req, res, url, tls);
  }
  let started;
  try {
    // Content-Length goes out first: an origin that does not say it is passed through.
    started = await d.downloader.start({ url, headers, insecure: tls.insecure, ca: tls.ca, needLength: true });
  } catch (err) {
    // Every pull now loads the registry: an operator must see it without debug logs.
    d.log.warn({ url: redactUrl(url), err: (err as Error).message }, 'p2p unavailable for this request, passing through');
    d.metrics.requests.inc({ route: 'direct' });
    return d.passThrough(req, res, url, tls);
  }
  const { tf } = started;
  const expect = blobDigestOf(url);
  res.writeHead(200, {
    'content-type': 'application/octet-stream',
    'content-length': tf.layout.fileLength,
    ...(expect ? { 'docker-content-digest': `sha256:${expect}` } : {}),
  });
  const signal = hangUpSignal(res);
  try {
    await pumpBlob(tf, res, { expectSha256: expect, signal, pool: d.blobPool, idleMs: d.blobIdleMs });
    // Counted once served, by how it was completed in the end (a fallback changes started.via).
    d.metrics.blobs.inc({ via: started.via });
  } catch (err) {
    const mismatch = isDfError(err, 'DIGEST_MISMATCH');
    const idle = err instanceof ClientIdleError;
    const reason = mismatch ? 'digest' : signal.aborted || idle ? 'client' : err instanceof LocalStorageError ? 'disk' : 'download';
    d.metrics.blobFailures.inc({ reason });
    const where = { url: redactUrl(url), taskId: tf.taskId };
    // Docker cancels pulls routinely: its hang-up is no fault here, nor of a peer (in Dragonfly
    // a peer is another dfdaemon), and the idle cut is the same client's doing.
    if (idle) d.log.info({ ...where, err: (err as Error).message }, 'client stopped reading; blob stream cut');
    else if (reason === 'client') d.log.info(where, 'client hung up; blob stream stopped');
    else d.log.warn({ ...where, err: (err as Error).message }, 'blob stream aborted');
    res.destroy();
    // A blob that failed its digest must not be served to anyone, local or peer.
    if (mismatch && (await d.store.discard(tf))) d.onDiscard?.(tf);
  }
}
