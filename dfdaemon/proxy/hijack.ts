import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { DfError, internal } from '../../shared/errors.js';
import type { Logger } from '../../shared/log/index.js';
import { socketError } from './errors.js';
import type { HijackCerts } from './hijack-certs.js';
import type { HostRule } from './upstream-tls.js';

/** Where a hijacked connection was going, from its CONNECT line. */
export interface HijackTarget {
  host: string;
  port: number;
  rule: HostRule;
}

export type HijackedHandler = (req: IncomingMessage, res: ServerResponse, target: HijackTarget) => void;

export interface Hijacker {
  (client: Duplex, head: Buffer, target: HijackTarget): Promise<void>;
  /** Emits 'request' for every request inside a hijacked tunnel, so shutdown can wait for them. */
  readonly requests: Server;
  /** Ends hijacked connections with no request running, as closeIdleConnections() does. */
  closeIdle(): void;
}

/**
 * The inner server never listen()s, so Node enforces none of its headersTimeout/requestTimeout,
 * and a bare TLSSocket has no handshake timeout: without these a client that stalls holds its
 * socket for good. Only waiting counts; a response in progress, however long, is never cut.
 */
export interface HijackTimeouts {
  /** From the 200 to a finished handshake (default 10 s: a real one takes milliseconds). */
  handshakeMs?: number;
  /** For a complete request head, from the handshake or the previous response's end: the
   *  headersTimeout the plain proxy server runs with. */
  headMs?: number;
  /**
   * CONNECTs between the hijack decision and a finished handshake; more are answered 503. Each
   * holds a TLS socket whose native memory is not all given back, so silent CONNECTs must not
   * be able to pile up until the memory limit.
   */
  maxHandshakes?: number;
}

interface Conn {
  target: HijackTarget;
  /** Requests whose response has not closed; pipelined ones can overlap. */
  inFlight: number;
  timer?: NodeJS.Timeout;
}

/**
 * Terminates TLS for CONNECTs we hijack and feeds the decrypted HTTP/1.1 into an internal
 * server, so each request inside the tunnel is routed like a plain one. The CONNECT target,
 * not the inner Host header, decides the upstream: it is what the host rule matched.
 */
export function createHijacker(certs: HijackCerts, onRequest: HijackedHandler, log: Logger, timeouts: HijackTimeouts = {}): Hijacker {
  const handshakeMs = timeouts.handshakeMs ?? 10_000;
  const headMs = timeouts.headMs ?? 15_000;
  const maxHandshakes = timeouts.maxHandshakes ?? Infinity;
  let handshaking = 0;
  const conns = new WeakMap<object, Conn>();
  const open = new Set<TLSSocket>();
  const expire = (conn: Conn, socket: TLSSocket, ms: number, what: string) => {
    clearTimeout(conn.timer);
    conn.timer = setTimeout(() => {
      log.debug({ host: conn.target.host, timeoutMs: ms }, `hijacked connection timed out waiting for ${what}`);
      socket.destroy();
    }, ms);
  };
  const inner = createServer((req, res) => {
    const conn = conns.get(req.socket);
    if (!conn) return void res.writeHead(500).end();
    clearTimeout(conn.timer);
    conn.inFlight++;
    // Node's keep-alive timer stops at the next request's first byte; a head that never ends
    // would then hang on, so the head bound restarts once the connection is idle again.
    res.once('close', () => {
      if (--conn.inFlight === 0 && !req.socket.destroyed) expire(conn, req.socket as TLSSocket, headMs, 'a request head');
    });
    onRequest(req, res, conn.target);
  });
  inner.on('clientError', (err, socket) => {
    log.debug({ err: err.message }, 'hijacked connection error');
    socket.destroy();
  });

  async function hijack(client: Duplex, head: Buffer, target: HijackTarget): Promise<void> {
    if (handshaking >= maxHandshakes) {
      log.debug({ host: target.host, handshaking }, 'too many hijacked CONNECTs in their TLS handshake; refused');
      const msg = `${handshaking} hijacked connections are still in their TLS handshake; retry later`;
      return socketError(client, new DfError('TOO_MANY_REQUESTS', msg, { status: 503 }));
    }
    // Counted from here: signing a leaf for the host is part of the cost.
    handshaking++;
    let counted = true;
    const settled = () => {
      if (counted) handshaking--;
      counted = false;
    };
    client.once('close', settled);
    const onEarlyError = () => client.destroy();
    client.once('error', onEarlyError);
    let ctx;
    try {
      ctx = await certs.contextFor(target.host);
    } catch (err) {
      log.error({ host: target.host, err: (err as Error).message }, 'cannot issue a certificate for hijacked host');
      return socketError(client, internal(`cannot issue a certificate for ${target.host}`));
    }
    if (client.destroyed) return;
    // The client sends its ClientHello only after this line, so no byte can be missed.
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) client.unshift(head);
    const tlsSocket = new TLSSocket(client as Socket, { isServer: true, secureContext: ctx, ALPNProtocols: ['http/1.1'] });
    client.off('error', onEarlyError);
    client.on('error', () => tlsSocket.destroy());
    tlsSocket.on('error', (err) => {
      log.debug({ host: target.host, err: err.message }, 'hijacked TLS error');
      tlsSocket.destroy();
    });
    const conn: Conn = { target, inFlight: 0 };
    conns.set(tlsSocket, conn);
    expire(conn, tlsSocket, handshakeMs, 'the TLS handshake');
    tlsSocket.once('secure', () => {
      settled();
      expire(conn, tlsSocket, headMs, 'a request head');
    });
    open.add(tlsSocket);
    tlsSocket.once('close', () => {
      settled();
      clearTimeout(conn.timer);
      open.delete(tlsSocket);
    });
    inner.emit('connection', tlsSocket);
  }

  return Object.assign(hijack, {
    requests: inner,
    closeIdle() {
      for (const s of open) if (conns.get(s)?.inFlight === 0) s.destroy();
    },
  });
}
