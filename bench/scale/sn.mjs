// Start a real supernode (compiled dist) in its own process and print its ports as JSON.
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadSupernodeConfig } from '../../dist/shared/config/supernode.js';
import { startSupernode } from '../../dist/supernode/server.js';
import { createLogger } from '../../dist/shared/log/index.js';

const dir = process.argv[2];
mkdirSync(dir, { recursive: true });
const file = join(dir, 'supernode.yml');
writeFileSync(file, `base:\n  listenPort: 0\n  downloadPort: 0\n  homeDir: ${join(dir, 'home')}\n${process.env.SN_EXTRA ?? ''}`);
const cfg = loadSupernodeConfig({ file, argv: [] });
const sn = await startSupernode(cfg, { host: '127.0.0.1', log: createLogger('sn', { level: process.env.SN_LOG ?? 'warn' }) });
process.stdout.write(JSON.stringify({ apiPort: sn.apiPort, downloadPort: sn.downloadPort, pid: process.pid }) + '\n');
process.on('SIGTERM', async () => {
  await sn.close().catch(() => {});
  process.exit(0);
});
