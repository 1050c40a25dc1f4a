import { DFDAEMON_FLAGS, loadDfdaemonConfig } from '../shared/config/dfdaemon.js';
import { checkHijackKeyPair, p2pWarnings } from '../shared/config/dfdaemon-startup.js';
import { flagHelp } from '../shared/config/dfget-flags.js';
import { runDaemon, startupLogger } from '../shared/cli/run-daemon.js';
import { answerInfoFlags } from '../shared/protocol/version.js';
import { startDfdaemon } from './daemon.js';

async function runGenCa(argv: string[]): Promise<void> {
  try {
    const { genCa, parseGenCaArgs } = await import('./cli/gen-ca.js');
    const { certFile, keyFile } = await genCa(parseGenCaArgs(argv));
    process.stdout.write(`wrote ${certFile} and ${keyFile}\n`);
  } catch (err) {
    process.stderr.write(`dfdaemon gen-ca: ${(err as Error).message}\n`);
    process.exit(2);
  }
}

const USAGE = `usage: dfdaemon [--config FILE] [--port N] [--node host[:port][=weight],...] [flags]
       dfdaemon gen-ca [--out DIR] [--cn NAME] [--days N] [--force]

Flags and dfdaemon.yml keys follow Dragonfly 1.x; each flag below names the key it sets, and
the README's "Configuration beyond Dragonfly's" lists the keys added here. A bad flag or key is
named in the error, exit 2; another start-up failure is one line, exit 1.

${flagHelp(DFDAEMON_FLAGS)}`;

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === 'gen-ca') return runGenCa(argv.slice(1));
  if (answerInfoFlags('dfdaemon', argv, USAGE)) return;
  const load = () => {
    const cfg = loadDfdaemonConfig({ argv });
    checkHijackKeyPair(cfg);
    return cfg;
  };
  await runDaemon('dfdaemon', load, (cfg) => startDfdaemon(cfg, { log: startupLogger('dfdaemon', cfg.verbose, cfg, p2pWarnings(cfg)) }));
}

void main();
