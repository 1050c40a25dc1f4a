// In-process supernode and dfdaemons on distinct loopback addresses, for functional tests.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadDfdaemonConfig } from '../../shared/config/dfdaemon.js';
import { loadSupernodeConfig } from '../../shared/config/supernode.js';
import { createLogger } from '../../shared/log/index.js';
import { startDfdaemon, type Dfdaemon } from '../../dfdaemon/daemon.js';
import { startSupernode, type Supernode, type SupernodeDeps } from '../../supernode/server.js';

const quiet = () => createLogger('test', { level: process.env.DF_LOG_LEVEL ?? 'silent' });

export async function supernodeAt(dir: string, host = '127.0.0.1', extraYaml = '', argv: string[] = [], deps: Omit<SupernodeDeps, 'host' | 'log'> = {}): Promise<Supernode> {
  const file = join(dir, `supernode-${host}.yml`);
  writeFileSync(file, `base:\n  listenPort: 0\n  downloadPort: 0\n  homeDir: ${join(dir, 'sn-home-' + host)}\n${extraYaml}`);
  const cfg = loadSupernodeConfig({ file, argv });
  return startSupernode(cfg, { ...deps, host, log: quiet() });
}

/** The user guide's one `proxies` rule, as YAML list items. */
const GUIDE_PROXIES = ['  - regx: blobs/sha256.*'];

/**
 * A dfdaemon on `host` using `nodes`. `proxies` are the rule list's YAML items (the guide's rule
 * unless given; [] writes no `proxies:` key).
 */
export async function dfdaemonAt(dir: string, host: string, nodes: string[], extraYaml = '', proxies: string[] = GUIDE_PROXIES): Promise<Dfdaemon> {
  const file = join(dir, `dfdaemon-${host}.yml`);
  const flags = JSON.stringify(['--node', nodes.join(','), '-f', 'Expires&Signature']);
  const rules = proxies.length > 0 ? `proxies:\n${proxies.join('\n')}\n` : '';
  writeFileSync(file, `port: 0\nworkHome: ${join(dir, 'df-' + host)}\ndfget_flags: ${flags}\n${rules}${extraYaml}`);
  const cfg = loadDfdaemonConfig({ file, defaultFile: null });
  return startDfdaemon(cfg, { host, log: quiet() });
}

/** Sum a counter (optionally one label value) from a Prometheus text exposition. */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})?\s+([0-9.e+-]+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const ok = Object.entries(labels).every(([k, v]) => (m[2] ?? '').includes(`${k}="${v}"`));
    if (ok) sum += Number(m[3]);
  }
  return sum;
}
