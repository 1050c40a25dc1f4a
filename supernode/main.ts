import { runDaemon, startupLogger } from '../shared/cli/run-daemon.js';
import { flagHelp } from '../shared/config/dfget-flags.js';
import { loadSupernodeConfig, SUPERNODE_FLAGS } from '../shared/config/supernode.js';
import { answerInfoFlags } from '../shared/protocol/version.js';
import { startSupernode } from './server.js';

const USAGE = `usage: supernode [--config FILE] [--home-dir DIR] [--port N] [--download-port N] [--listen-ip IP] [flags]

Flags and supernode.yml keys follow Dragonfly 1.x; each flag below names the base key it sets,
and the README's "Configuration beyond Dragonfly's" lists the keys added here. A bad flag or key
is named in the error, exit 2; another start-up failure is one line, exit 1.

${flagHelp(SUPERNODE_FLAGS)}`;

const argv = process.argv.slice(2);
if (!answerInfoFlags('supernode', argv, USAGE)) {
  void runDaemon('supernode', () => loadSupernodeConfig({ argv }), (cfg) => startSupernode(cfg, { log: startupLogger('supernode', cfg.debug, cfg) }));
}
