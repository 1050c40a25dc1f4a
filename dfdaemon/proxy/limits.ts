/**
 * What the proxy port lets a client hold. Every peer of the cluster can reach this port and a
 * public blob needs no credentials, while the dfdaemon runs in a 100 MB cgroup (the seed's
 * mem_limit) with about 60 MB taken at rest: each limit below is what keeps one kind of stalled
 * client from growing memory without bound, far above what Docker and the peers use.
 */
export interface ProxyLimits {
  /**
   * Connections the proxy server (and a separate peer server) accepts at once; more are closed
   * on accept. An idle connection costs about 5 KB and a hijacked one whose handshake is done
   * about 20-40 KB of native TLS memory, so 1024 stays within ~30 MB in the worst case. Docker
   * opens a few per pull, and peers' keep-alive connections to the uploader last 5 s, with at
   * most maxConcurrentUploads (16) of them busy.
   */
  maxConnections: number;
  /**
   * A connection must have sent a whole request head this long after it opened (or after its
   * previous response). Docker sends its head at once; Node's own 60 s let 15,000 silent
   * connections reach 141 MB.
   */
  headersTimeoutMs: number;
  /** How often Node looks for connections past headersTimeoutMs (its default, 30 s, doubles the timeout). */
  checkIntervalMs: number;
  /**
   * A hijacked CONNECT must finish its TLS handshake in this long. A TLS socket is made for each
   * one before the ClientHello arrives, and its native memory is not all given back: a real
   * handshake takes milliseconds.
   */
  handshakeMs: number;
  /** Hijacked CONNECTs still in their handshake; more are answered 503 (a burst of Docker pulls opens a few dozen). */
  maxHandshakes: number;
  /**
   * A blind CONNECT tunnel with no byte either way for this long is closed. Go's HTTP transport
   * (Docker) drops its own idle connections after 90 s, so a tunnel this quiet has been
   * forgotten by its client; 5 min still leaves room for a slow registry that thinks before
   * answering.
   */
  tunnelIdleMs: number;
  /**
   * A request without a body passed through to the registry (a manifest GET, a blob HEAD) whose
   * upstream sends nothing for this long is answered 504.
   */
  passIdleMs: number;
  /**
   * The same for a request with a body (a layer upload, a manifest PUT), counted from the
   * upstream's last sign of life, so also after the body's last byte: distribution answers a
   * layer's final PUT only once the layer is in place, which on object storage takes minutes
   * for a multi-GB layer, and Docker waits for that answer without a limit.
   */
  passBodyIdleMs: number;
  /**
   * A blob response whose client takes no bytes for this long (while some are waiting for it)
   * is cut, as the uploader cuts a stalled peer. Waiting for pieces or for a buffer is ours, not
   * the client's, and does not count.
   */
  blobIdleMs: number;
  /**
   * Bytes of read buffers that all blob responses share (1 MiB each, up to 3 per response). A
   * response that finds none free waits for one: the stalled clients holding them are cut after
   * blobIdleMs, and a response gets no faster with more buffers than the disk and the client
   * give it. 16 MiB lets five responses run at full speed (Docker pulls 3 layers at once).
   */
  blobBufferBytes: number;
}

export const DEFAULT_PROXY_LIMITS: Readonly<ProxyLimits> = Object.freeze({
  maxConnections: 1024,
  headersTimeoutMs: 15_000,
  checkIntervalMs: 2_000,
  handshakeMs: 10_000,
  maxHandshakes: 128,
  tunnelIdleMs: 5 * 60_000,
  passIdleMs: 120_000,
  passBodyIdleMs: 60 * 60_000,
  blobIdleMs: 30_000,
  blobBufferBytes: 16 * 1024 * 1024,
});

export function proxyLimits(over: Partial<ProxyLimits> = {}): ProxyLimits {
  return { ...DEFAULT_PROXY_LIMITS, ...over };
}
