import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { internal } from '../../shared/errors.js';
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

/**
 * Terminates TLS for CONNECTs we hijack and feeds the decrypted HTTP/1.1 into an internal
 * server, so each request inside the tunnel is routed like a plain one. The CONNECT target,
 * not the inner Host header, decides the upstream: it is what the host rule matched.
 */
export function createHijacker(certs: HijackCerts, onRequest: HijackedHandler, log: Logger) {
  const targets = new WeakMap<object, HijackTarget>();
  const inner = createServer((req, res) => {
    const target = targets.get(req.socket);
    if (!target) return void res.writeHead(500).end();
    onRequest(req, res, target);
  });
  inner.on('clientError', (err, socket) => {
    log.debug({ err: err.message }, 'hijacked connection error');
    socket.destroy();
  });

  return async function hijack(client: Duplex, head: Buffer, target: HijackTarget): Promise<void> {
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
    targets.set(tlsSocket, target);
    inner.emit('connection', tlsSocket);
  };
}
