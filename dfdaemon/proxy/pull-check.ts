import type { PassOptions } from './passthrough.js';
import { agentFor } from '../../shared/http/agents.js';
import { discard, send } from '../../shared/http/client.js';

/**
 * Whether the registry lets this client pull this blob, asked with a HEAD carrying the
 * client's own headers. Registry tokens are scoped per repository, and a blob cached by the
 * swarm (or in this dfdaemon) was fetched with somebody else's token: without this question,
 * any proxy client who knows a digest could read a private layer through it. (The piece ports
 * serve by task ID unasked, as in Dragonfly: see README, "Private repositories".) A HEAD moves
 * no blob bytes, and a redirect to storage means the registry already said yes.
 */
export async function mayPull(url: string, headers: Record<string, string>, tls: PassOptions): Promise<{ ok: boolean; status: number }> {
  const res = await send(url, { method: 'HEAD', headers, agent: agentFor(url, tls.insecure ?? false, tls.ca ?? []), timeoutMs: 10_000 });
  discard(res.body);
  return { ok: res.status < 400, status: res.status };
}
