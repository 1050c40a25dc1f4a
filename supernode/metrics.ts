import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** The supernode's Prometheus metrics, one registry per instance so tests can run several. */
export function createSupernodeMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'supernode_' });
  const m = {
    registry,
    piecesScheduled: new Counter({
      name: 'supernode_pieces_scheduled_total',
      help: 'Pieces handed out to peers, by where the peer was told to fetch them',
      labelNames: ['source'] as const,
      registers: [registry],
    }),
    sourceBytes: new Counter({ name: 'supernode_source_bytes_total', help: 'Bytes read from origins', registers: [registry] }),
    servedBytes: new Counter({ name: 'supernode_served_bytes_total', help: 'Piece bytes served on the download port', registers: [registry] }),
    pieceFailures: new Counter({
      name: 'supernode_piece_failures_total',
      help: 'Piece fetch failures reported by peers',
      labelNames: ['source'] as const,
      registers: [registry],
    }),
    cdnFills: new Counter({
      name: 'supernode_cdn_fills_total',
      help: 'CDN tasks ended, by result: success, source_error, storage_error (our own disk) or cancelled',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    sourceRetries: new Counter({ name: 'supernode_source_retries_total', help: 'Transient origin failures (reset, stall, 5xx/429) a CDN task retried', registers: [registry] }),
    registrations: new Counter({ name: 'supernode_registrations_total', help: 'Peer registrations', labelNames: ['result'] as const, registers: [registry] }),
    blacklistEvents: new Counter({ name: 'supernode_blacklist_events_total', help: 'Peers blacklisted by a requester after a failed piece', registers: [registry] }),
    eliminations: new Counter({ name: 'supernode_eliminations_total', help: 'Peers that reached eliminationLimit and stopped being sources', registers: [registry] }),
    gcRuns: new Counter({ name: 'supernode_gc_runs_total', help: 'GC runs by kind', labelNames: ['kind'] as const, registers: [registry] }),
    gcFreedBytes: new Counter({ name: 'supernode_gc_freed_bytes_total', help: 'Bytes of task files deleted by disk GC', registers: [registry] }),
    tasks: new Gauge({ name: 'supernode_tasks', help: 'Tasks with a swarm: peers registered or joining (not the CDN cache: see supernode_cdn_cached_tasks)', registers: [registry] }),
    cachedTasks: new Gauge({ name: 'supernode_cdn_cached_tasks', help: 'Blobs complete in the CDN cache, preheated or pulled', registers: [registry] }),
    cachedBytes: new Gauge({ name: 'supernode_cdn_cached_bytes', help: 'Bytes of the blobs complete in the CDN cache', registers: [registry] }),
    peers: new Gauge({ name: 'supernode_peers', help: 'Peers registered across tasks', registers: [registry] }),
  };
  return m;
}
export type SupernodeMetrics = ReturnType<typeof createSupernodeMetrics>;
