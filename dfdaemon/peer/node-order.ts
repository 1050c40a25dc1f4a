import { createHash } from 'node:crypto';
import type { SupernodeAddress } from '../../shared/config/dfget-flags.js';

/**
 * Weighted rendezvous hashing of a task over the supernodes: each node scores
 * -weight / ln(u), u uniform in (0, 1) from hash(task, node), and nodes are tried best score
 * first. A node ranks first for weight/sum(weights) of the tasks, which is the share
 * Dragonfly's shuffled, weight-repeated list gives it, but every peer computes the same order
 * for a task, so one blob's peers meet on one supernode. Removing a node moves only its tasks.
 */
export function nodeOrder(nodes: readonly SupernodeAddress[], taskKey: string): string[] {
  // A node listed twice counts with both weights, as in Dragonfly's repeated list.
  const weights = new Map<string, number>();
  for (const n of nodes) weights.set(n.addr, (weights.get(n.addr) ?? 0) + n.weight);
  const scored = [...weights].map(([addr, weight]) => {
    const h = createHash('sha256').update(taskKey).update('\0').update(addr).digest();
    // 52 random bits, shifted off zero so that ln(u) < 0.
    const u = (Number(h.readBigUInt64BE(0) >> 12n) + 0.5) / 2 ** 52;
    return { addr, score: -weight / Math.log(u) };
  });
  return scored.sort((a, b) => b.score - a.score).map((s) => s.addr);
}
