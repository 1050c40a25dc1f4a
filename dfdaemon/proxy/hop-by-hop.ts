import type { IncomingHttpHeaders } from 'node:http';

// RFC 9110 §7.6.1: these describe one connection, not the message. transfer-encoding is left
// to Node, which frames each side itself.
export const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'upgrade'];

/** The hop-by-hop headers of a message: the fixed ones and every one its Connection names. */
export function hopByHop(headers: IncomingHttpHeaders): string[] {
  const named = String(headers.connection ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  return [...HOP_BY_HOP, ...named].filter((h) => h !== 'transfer-encoding');
}

/** Drop them in place. */
export function stripHopByHop(headers: IncomingHttpHeaders): void {
  for (const h of hopByHop(headers)) delete headers[h];
}
