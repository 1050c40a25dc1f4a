// `--help` of the three commands, run as an operator runs them (bin/): every flag the command
// accepts is listed, dfget answers --help and --version like stock dfget, and the README
// section the help points at exists.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DFDAEMON_FLAGS } from '../shared/config/dfdaemon.js';
import { DFGET_SPECS, type FlagSpec } from '../shared/config/dfget-flags.js';
import { SUPERNODE_FLAGS } from '../shared/config/supernode.js';
import { REPO_ROOT } from './helpers/e2e.js';

function run(bin: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(join(REPO_ROOT, 'bin', bin), args, { encoding: 'utf8', timeout: 30_000 });
}

/** True when `flag` (`--name` or `-x`) stands as a flag of its own in the help text. */
const lists = (help: string, flag: string): boolean =>
  new RegExp(`(?:^|[\\s,\\[])${flag.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?=[\\s,=\\]]|$)`, 'm').test(help);

// Flags Dragonfly 1.0 users type, named here and not taken from our tables, so a table that
// lost one is caught too.
const COMMANDS: Array<{ bin: string; table: readonly FlagSpec[]; dragonfly: string[] }> = [
  { bin: 'supernode', table: SUPERNODE_FLAGS, dragonfly: ['--config', '--port', '--download-port', '--home-dir', '--advertise-ip', '--up-limit', '--down-limit', '-D', '--fail-access-interval', '--pool-size'] },
  { bin: 'dfdaemon', table: DFDAEMON_FLAGS, dragonfly: ['--config', '--port', '--node', '--registry', '--ratelimit', '--urlfilter', '--notbs', '--callsystem', '--workHome', '--certpem', '--keypem'] },
  { bin: 'dfget', table: DFGET_SPECS, dragonfly: ['-u', '-o', '-n', '--node', '-f', '--header', '-m', '-e', '-p', '-s', '--notbs', '--home', '--ip', '--port'] },
];

describe('--help lists every flag each command accepts', () => {
  for (const { bin, table, dragonfly } of COMMANDS) {
    it(`${bin} --help`, () => {
      const r = run(bin, ['--help']);
      assert.equal(r.status, 0, r.stderr);
      const wanted = [...table.flatMap((s) => [`--${s.name}`, ...(s.short === undefined ? [] : [`-${s.short}`])]), ...dragonfly, '--help', '--version'];
      const missing = wanted.filter((f) => !lists(r.stdout, f));
      assert.deepEqual(missing, [], `${bin} --help does not list ${missing.join(' ')}:\n${r.stdout}`);
    });
  }

  it('the README sections the help points at exist', () => {
    const headings = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8').split('\n').filter((l) => l.startsWith('#')).map((l) => l.replace(/^#+\s*/, ''));
    for (const bin of ['supernode', 'dfdaemon']) {
      const help = run(bin, ['--help']).stdout;
      const named = [...help.replace(/\s+/g, ' ').matchAll(/README's "([^"]+)"/g)].map((m) => m[1]);
      assert.ok(named.length > 0, `${bin} --help names no README section`);
      for (const n of named) assert.ok(headings.includes(n), `${bin} --help points at README section "${n}", which does not exist`);
    }
  });
});

describe('dfget answers --help and --version as stock dfget does', () => {
  for (const args of [['--help'], ['-h'], ['--version'], ['-v']]) {
    it(`dfget ${args.join(' ')}: exit 0, output on stdout`, () => {
      const r = run('dfget', args);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, '');
      assert.match(r.stdout, args[0].startsWith('--h') || args[0] === '-h' ? /^usage: dfget -u URL -o FILE/ : /^dfget \d+\.\d+\.\d+/);
    });
  }
});
