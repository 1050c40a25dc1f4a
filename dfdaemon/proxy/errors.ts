import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { DfError } from '../../shared/errors.js';

/** The catalogue's status and `{code, message}` body, so operators and scripts can match on the code. */
export function sendError(res: ServerResponse, err: DfError): void {
  const body = JSON.stringify(err.toJSON());
  res.writeHead(err.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
}

/**
 * The same answer on a raw CONNECT socket, which no ServerResponse wraps. The socket is closed
 * once the answer is flushed: destroying it at once would drop the answer, and the client would
 * see a bare reset instead of the reason.
 */
export function socketError(socket: Duplex, err: DfError): void {
  if (socket.destroyed) return;
  const body = JSON.stringify(err.toJSON());
  const head = `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n`;
  socket.end(head + body, () => socket.destroy());
}
