import { createHash } from 'node:crypto';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { upstreamTls } from '../tls/ca-store.js';

const httpAgent = new HttpAgent({ keepAlive: true });
const httpsAgents = new Map<string, HttpsAgent>();
/**
 * Distinct TLS settings kept at once. On the supernode the extra CAs come from each registering
 * peer, so without a bound any peer could make it hold agents (and CA lists) without end.
 */
const MAX_AGENTS = 64;

/** One keep-alive agent per TLS setting: the system CA store plus extra CAs, or no checks. */
export function agentFor(url: string, insecure: boolean, ca: string[]): HttpAgent | HttpsAgent {
  if (!url.startsWith('https:')) return httpAgent;
  const key = `${insecure}|${createHash('sha256').update(ca.join('\0')).digest('hex')}`;
  let a = httpsAgents.get(key);
  if (a) {
    // Most recently used last, so the oldest is first to go.
    httpsAgents.delete(key);
  } else {
    a = new HttpsAgent({ keepAlive: true, ...upstreamTls(insecure, ca) });
    if (httpsAgents.size >= MAX_AGENTS) retire(httpsAgents.keys().next().value as string);
  }
  httpsAgents.set(key, a);
  return a;
}

/** Drop an agent without cutting its requests in flight: idle sockets close, busy ones after use. */
function retire(key: string): void {
  const a = httpsAgents.get(key);
  httpsAgents.delete(key);
  if (!a) return;
  (a as unknown as { keepAlive: boolean }).keepAlive = false;
  for (const list of Object.values(a.freeSockets)) for (const s of list ?? []) s.destroy();
}
