import { Counter, Registry, collectDefaultMetrics } from 'prom-client';

/** dfdaemon's Prometheus metrics; the tests read these to prove where bytes came from. */
export function createDfdaemonMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'dfdaemon_' });
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Counter<L>({ name, help, labelNames, registers: [registry] });
  return {
    registry,
    // route: p2p, direct, mirror (pass-through to registry_mirror.remote), tunnel (blind
    // CONNECT), hijacked (CONNECT with TLS terminated here), upload (peers fetching pieces).
    requests: counter('dfdaemon_requests_total', 'Proxy requests by route', ['route'] as const),
    // via: p2p, p2p+source (a P2P download the origin completed after the swarm failed it),
    // source (no supernode took it), local (the cache, or a download already running); read
    // from Started.via once the blob is complete, as it changes on a fallback.
    blobs: counter('dfdaemon_blobs_total', 'Blobs served to clients, by how they were obtained', ['via'] as const),
    pieceBytes: counter('dfdaemon_piece_bytes_total', 'Wrapped piece bytes downloaded, by source', ['source'] as const),
    sourceBytes: counter('dfdaemon_source_bytes_total', 'Bytes fetched from origins directly (back-source)'),
    uploadBytes: counter('dfdaemon_upload_bytes_total', 'Piece bytes uploaded to other peers'),
    relayedUploads: counter('dfdaemon_relayed_uploads_total', 'Piece uploads that started while the piece was still arriving here (cut-through)'),
    pieceFailures: counter('dfdaemon_piece_failures_total', 'Piece fetches that failed or did not verify', ['source'] as const),
    pieceBusy: counter('dfdaemon_piece_busy_total', 'Piece fetches a peer refused because its upload slots were taken (503); not failures'),
    pieceSlow: counter('dfdaemon_piece_slow_cuts_total', 'Piece fetches cut off because their source was slow next to this download\'s other fetches (also in piece_failures_total)'),
    blobFailures: counter('dfdaemon_blob_failures_total', 'Blob streams aborted', ['reason'] as const),
    evictions: counter('dfdaemon_cache_evictions_total', 'Task files removed from the local cache'),
  };
}
export type DfdaemonMetrics = ReturnType<typeof createDfdaemonMetrics>;
