import { loadSupernodeConfig } from '../shared/config/supernode.js';
import { DfError } from '../shared/errors.js';
import { ioGc } from '../shared/mem/gc-pacer.js';
import { startSupernode } from './server.js';

/** Entry point: config errors are printed with the key they name, then exit 2; start-up errors exit 1. */
async function main(): Promise<void> {
  let cfg;
  try {
    cfg = loadSupernodeConfig({ argv: process.argv.slice(2) });
  } catch (err) {
    if (err instanceof DfError) {
      process.stderr.write(`supernode: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  ioGc.enable();
  let sn;
  try {
    sn = await startSupernode(cfg);
  } catch (err) {
    // A known start-up failure (e.g. HOME_DIR_IN_USE) is a message for the operator, not a crash.
    if (err instanceof DfError) {
      process.stderr.write(`supernode: ${err.code}: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const stop = () => {
    sn.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

void main();
