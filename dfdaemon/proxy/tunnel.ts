import { connect, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { badRequest, DfError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log/index.js';
import { ioGc } from '../../shared/mem/gc-pacer.js';
import { socketError } from './errors.js';

/** How long one side of a tunnel may stay silent after the other has ended before it is dropped. */
const DRAIN_IDLE_MS = 30_000;

/**
 * CONNECT host:port as a blind TCP tunnel (hosts we do not hijack). The caller has validated
 * the target and put an error listener on the client socket. An established tunnel that
 * carries no byte either way for `idleMs` is closed (both of its sockets and fds).
 */
export function tunnel(target: { host: string; port: number }, client: Duplex, head: Buffer, log: Logger, idleMs = 0): void {
  const where = `${target.host}:${target.port}`;
  let upstream: Socket;
  try {
    upstream = connect({ host: target.host, port: target.port });
  } catch (err) {
    return socketError(client, badRequest(`cannot tunnel to ${where}: ${(err as Error).message}`));
  }
  let established = false;
  upstream.once('connect', () => {
    established = true;
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
    ioGc.watch(upstream);
    ioGc.watch(client);
    // Every byte either way is read or written by the upstream socket, so its timer alone sees
    // all traffic.
    if (idleMs > 0)
      upstream.setTimeout(idleMs, () => {
        log.debug({ target: where, idleMs }, 'idle tunnel closed');
        upstream.destroy();
        client.destroy();
      });
  });
  upstream.once('error', (err) => {
    log.debug({ target: where, err: err.message }, 'tunnel closed');
    // Before the tunnel is up the client is still speaking HTTP and gets the reason.
    if (!established) socketError(client, new DfError('SOURCE_UNREACHABLE', `cannot reach ${where}: ${err.message}`));
    else client.destroy();
  });
  // A side that ended cleanly has been end()ed onto the other by pipe(), which still flushes
  // what is queued for it: destroying that side too would cut the tail of, say, a slow
  // client's download. Only a side that went away without its end takes the other with it.
  client.once('close', () => {
    if (!established || !client.readableEnded || client.errored) return void upstream.destroy();
    // The client's last bytes may still be on their way up, but nobody is left to read the
    // answer: drain it so the upstream can finish, and drop an upstream that goes quiet.
    upstream.unpipe(client);
    upstream.resume();
    upstream.setTimeout(DRAIN_IDLE_MS, () => upstream.destroy());
  });
  upstream.once('close', () => {
    if (established && (!upstream.readableEnded || upstream.errored)) return void client.destroy();
    // Ended cleanly: the client gets the tail, but one that never closes its side must not hold
    // the socket for good.
    if (client instanceof Socket) client.setTimeout(DRAIN_IDLE_MS, () => client.destroy());
  });
}
