// An HTTPS server on a test address, with a leaf certificate for that IP signed by a test CA:
// the hijack tests' registry with TLS (the counting origin's blobs, or any other handler).
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { issueCert, type IssuedCert, type TestCa } from '../fixtures/tls.js';
import type { Origin } from './origin.js';

export type TlsHandler = Parameters<typeof createServer>[1];

export async function serveTls(ca: TestCa, ip: string, handler: TlsHandler, opts: { port?: number; name?: string } = {}): Promise<{ server: Server; port: number; leaf: IssuedCert }> {
  const leaf = await issueCert(ca, { ips: [ip], name: opts.name ?? `origin-${ip}` });
  const server = createServer({ cert: leaf.certPem, key: leaf.keyPem }, handler);
  await new Promise<void>((r) => server.listen(opts.port ?? 0, ip, () => r()));
  return { server, port: (server.address() as AddressInfo).port, leaf };
}

/** The counting origin's own request handler, to serve its blobs over TLS as well. */
export function originHandler(origin: Origin): TlsHandler {
  return origin.server.listeners('request')[0] as TlsHandler;
}
