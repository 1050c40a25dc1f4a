import { pino, type Logger } from 'pino';

/** One root logger per process; modules take children carrying taskId / peer ids. */
export function createLogger(name: string, opts: { debug?: boolean; level?: string } = {}): Logger {
  const level = process.env.DF_LOG_LEVEL ?? opts.level ?? (opts.debug ? 'debug' : 'info');
  return pino({ name, level, base: { name, pid: process.pid } });
}

export type { Logger };
