import { loadSupernodeConfig } from '../shared/config/supernode.js';
import { DfError, startupError } from '../shared/errors.js';
import { ioGc } from '../shared/mem/gc-pacer.js';
import { answerInfoFlags } from '../shared/protocol/version.js';
import { startSupernode } from './server.js';

/** Entry point: config errors are printed with the key they name, then exit 2; start-up errors exit 1. */
const USAGE = `usage: supernode [--config FILE] [--home-dir DIR] [--port N] [--download-port N] [--listen-ip IP] [flags]

Flags and supernode.yml keys follow Dragonfly 1.x (README, "Configuration"); a bad one is named
in the error. Default config: /etc/dragonfly/supernode.yml.`;

async function main(): Promise<void> {
  if (answerInfoFlags('supernode', process.argv.slice(2), USAGE)) return;
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
    // A start-up failure (HOME_DIR_IN_USE, a busy port, a homeDir it may not write) is a message
    // for the operator, not a crash.
    process.stderr.write(`supernode: ${startupError(err)}\n`);
    process.exit(1);
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
