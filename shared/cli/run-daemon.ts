import { DfError, startupError } from '../errors.js';
import { createLogger, type Logger } from '../log/index.js';
import { ioGc } from '../mem/gc-pacer.js';

/**
 * The life of a daemon process: a config error (it names the key) exits 2, any other start-up
 * failure is one line and exits 1, and SIGTERM or SIGINT closes it cleanly. Some config errors
 * only show when the daemon uses a setting (a certificate whose key does not match): those
 * exit 2 as well, so an operator's script can tell "fix the file" from "fix the machine".
 */
export async function runDaemon<C, D extends { close(): Promise<void> }>(name: string, load: () => C, start: (cfg: C) => Promise<D>): Promise<void> {
  let cfg: C;
  try {
    cfg = load();
  } catch (err) {
    if (!(err instanceof DfError)) throw err;
    process.stderr.write(`${name}: ${err.message}\n`);
    process.exit(2);
  }
  ioGc.enable();
  let d: D;
  try {
    d = await start(cfg);
  } catch (err) {
    process.stderr.write(`${name}: ${startupError(err)}\n`);
    process.exit(err instanceof DfError && err.code === 'CONFIG_INVALID' ? 2 : 1);
  }
  const stop = () => {
    d.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

/**
 * The daemon's logger, after it has warned once about each setting the config asks for and the
 * daemon does not act on, and about each of `warnings` (a config that loads but cannot do what
 * it is for): Dragonfly's files must keep loading, so those are not refused.
 */
export function startupLogger(name: string, debug: boolean, cfg: { ignored: readonly string[]; configFile: string | null }, warnings: readonly string[] = []): Logger {
  const log = createLogger(name, { debug });
  for (const setting of [...cfg.ignored, ...warnings]) log.warn({ configFile: cfg.configFile }, setting);
  return log;
}
