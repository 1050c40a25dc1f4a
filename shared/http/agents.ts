import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { upstreamTls } from '../tls/ca-store.js';

const httpAgent = new HttpAgent({ keepAlive: true });
const httpsAgents = new Map<string, HttpsAgent>();

/** One keep-alive agent per TLS setting: the system CA store plus extra CAs, or no checks. */
export function agentFor(url: string, insecure: boolean, ca: string[]): HttpAgent | HttpsAgent {
  if (!url.startsWith('https:')) return httpAgent;
  const key = `${insecure}|${ca.join('')}`;
  let a = httpsAgents.get(key);
  if (!a) {
    a = new HttpsAgent({ keepAlive: true, ...upstreamTls(insecure, ca) });
    httpsAgents.set(key, a);
  }
  return a;
}
