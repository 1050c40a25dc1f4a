import { pino, type DestinationStream, type Logger } from 'pino';
import { ConfigError } from '../errors.js';

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * DF_LOG_LEVEL, checked here rather than by pino, whose refusal names neither the variable nor
 * the levels. Empty means unset: compose files often pass `DF_LOG_LEVEL=` through, and that
 * should not override `debug:`/`verbose:`. `warning` is what Harbor's own files spell.
 */
export function envLogLevel(raw = process.env.DF_LOG_LEVEL): string | undefined {
  const v = raw?.trim().toLowerCase();
  if (!v) return undefined;
  const level = v === 'warning' ? 'warn' : v;
  if (!LEVELS.includes(level)) throw new ConfigError('DF_LOG_LEVEL', `unknown log level ${JSON.stringify(raw)} (expected one of ${LEVELS.join(', ')})`, raw);
  return level;
}

/**
 * One root logger per process; modules take children carrying taskId / peer ids. The daemons log
 * to stdout; `destination` is for a CLI whose stdout carries its result (dfget: stderr).
 */
export function createLogger(name: string, opts: { debug?: boolean; level?: string; destination?: DestinationStream } = {}): Logger {
  const level = envLogLevel() ?? opts.level ?? (opts.debug ? 'debug' : 'info');
  const options = { name, level, base: { name, pid: process.pid } };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

export type { Logger };
