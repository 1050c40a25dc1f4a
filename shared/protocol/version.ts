/** The Dragonfly version we speak, with our suffix: in /version, registrations and User-Agent. */
export const VERSION = '1.0.6-ts';

/** `--version` / `--help` before any config is read; true when the command is answered. */
export function answerInfoFlags(name: string, argv: readonly string[], usage: string): boolean {
  if (argv.includes('--version') || argv.includes('-v') && argv.length === 1) {
    process.stdout.write(`${name} ${VERSION} (dragonfly-ts, node ${process.version})\n`);
    return true;
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage}\n`);
    return true;
  }
  return false;
}
