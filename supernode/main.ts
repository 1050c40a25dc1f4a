import { runDaemon, startupLogger } from '../shared/cli/run-daemon.js';
import { loadSupernodeConfig } from '../shared/config/supernode.js';
import { answerInfoFlags } from '../shared/protocol/version.js';
import { startSupernode } from './server.js';

const USAGE = `usage: supernode [--config FILE] [--home-dir DIR] [--port N] [--download-port N] [--listen-ip IP] [flags]

Flags and supernode.yml keys follow Dragonfly 1.x (README, "Configuration"); a bad one is named
in the error. Default config: /etc/dragonfly/supernode.yml.`;

const argv = process.argv.slice(2);
if (!answerInfoFlags('supernode', argv, USAGE)) {
  void runDaemon('supernode', () => loadSupernodeConfig({ argv }), (cfg) => startSupernode(cfg, { log: startupLogger('supernode', cfg.debug, cfg) }));
}
