import { connect, type Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../shared/log/index.js';

/** CONNECT host:port as a blind TCP tunnel (hosts we do not hijack). */
export function tunnel(req: IncomingMessage, client: Duplex, head: Buffer, log: Logger): void {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(req.url ?? '');
  if (!m) {
    client.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    return;
  }
  const upstream: Socket = connect({ host: m[1], port: Number(m[2]) });
  const fail = (err: Error) => {
    log.debug({ target: req.url, err: err.message }, 'tunnel closed');
    upstream.destroy();
    client.destroy();
  };
  upstream.once('connect', () => {
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  });
  upstream.once('error', (err) => {
    if (!upstream.readyState || upstream.connecting) client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
    fail(err);
  });
  client.once('error', fail);
  client.once('close', () => upstream.destroy());
  upstream.once('close', () => client.destroy());
}
