import type { ServerResponse } from 'node:http';

/**
 * A short text/plain answer with its Content-Length. writeHead renders the head before end()
 * knows the body, so without the length it goes out chunked, which piece clients that frame
 * bodies by Content-Length cannot read.
 */
export function replyText(res: ServerResponse, status: number, msg: string, headers: Record<string, string> = {}): void {
  const body = `${msg}\n`;
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)), ...headers }).end(body);
}
