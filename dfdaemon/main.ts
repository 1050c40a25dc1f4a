import { loadDfdaemonConfig } from '../shared/config/dfdaemon.js';
import { DfError } from '../shared/errors.js';
import { startDfdaemon } from './daemon.js';

async function main(): Promise<void> {
  let cfg;
  try {
    cfg = loadDfdaemonConfig({ argv: process.argv.slice(2) });
  } catch (err) {
    if (err instanceof DfError) {
      process.stderr.write(`dfdaemon: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const d = await startDfdaemon(cfg);
  const stop = () => {
    d.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

void main();
