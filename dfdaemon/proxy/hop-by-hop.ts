import type { IncomingHttpHeaders } from 'node:http';

// RFC 9110 §7.6.1: these describe one connection, not the message. transfer-encoding is left
// to Node, which frames each side itself.
const HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'upgrade'];

/** Drop the hop-by-hop headers, and every header the Connection header names, in place. */
export function stripHopByHop(headers: IncomingHttpHeaders): void {
  const named = String(headers.connection ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  for (const h of [...HOP, ...named]) if (h !== 'transfer-encoding') delete headers[h];
}
