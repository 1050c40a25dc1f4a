// What `npm start` gives the dfdaemon, apart from start.ts so a test can check it without
// starting anything on the fixed default ports.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_DFDAEMON_CONFIG_PATH } from '../shared/config/dfdaemon.js';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Routes blobs through P2P, as the guide's dfdaemon.yml does: without it nothing would. */
export const NPM_START_DFDAEMON_CONFIG = join(REPO_ROOT, 'config', 'dfdaemon.yml');

/** The operator's own /etc/dragonfly/dfdaemon.yml wins; `node` is npm start's supernode. */
export function dfdaemonArgs(node: string, systemConfigExists = existsSync(DEFAULT_DFDAEMON_CONFIG_PATH)): string[] {
  return [...(systemConfigExists ? [] : ['--config', NPM_START_DFDAEMON_CONFIG]), '--node', node];
}
