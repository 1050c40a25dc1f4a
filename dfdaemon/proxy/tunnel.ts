import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { badRequest, DfError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log/index.js';
import { socketError } from './errors.js';

/**
 * CONNECT host:port as a blind TCP tunnel (hosts we do not hijack). The caller has validated
 * the target and put an error listener on the client socket.
 */
export function tunnel(target: { host: string; port: number }, client: Duplex, head: Buffer, log: Logger): void {
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
  });
  upstream.once('error', (err) => {
    log.debug({ target: where, err: err.message }, 'tunnel closed');
    // Before the tunnel is up the client is still speaking HTTP and gets the reason.
    if (!established) socketError(client, new DfError('SOURCE_UNREACHABLE', `cannot reach ${where}: ${err.message}`));
    else client.destroy();
  });
  client.once('close', () => upstream.destroy());
  upstream.once('close', () => {
    if (established) client.destroy();
  });
}
