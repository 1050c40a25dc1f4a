// What an operator sees when a dfdaemon starts: a warning when nothing it proxies can go through
// P2P (npm start's own config and the guide's files give none), and start-up failures that end
// the process with one line and the documented code (2: fix the config, 1: fix the machine).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { genCa } from '../dfdaemon/cli/gen-ca.js';
import { routeAbsolute } from '../dfdaemon/proxy/router.js';
import { dfdaemonArgs, NPM_START_DFDAEMON_CONFIG } from '../scripts/start-args.js';
import { loadDfdaemonConfig } from '../shared/config/dfdaemon.js';
import { envLogLevel } from '../shared/log/index.js';
import { seedFile } from './helpers/e2e.js';

const DFDAEMON_MAIN = fileURLToPath(new URL('../dfdaemon/main.js', import.meta.url));
const WARN = 40;
const NO_P2P = /^proxies: no rules/;

interface Run {
  /** Exit code, or null when it reached "listening" and was stopped by the test. */
  code: number | null;
  stderr: string;
  warnings: string[];
}

/** Runs the dfdaemon until it listens (then stops it) or exits on its own. */
async function runDfdaemon(argv: string[], home: string, logLevel = 'info'): Promise<Run> {
  const child = spawn(process.execPath, [DFDAEMON_MAIN, '--port', '0', '--listen-ip', '127.0.0.1', ...argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HOME: home, DF_LOG_LEVEL: logLevel },
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = once(child, 'exit');
  const warnings: string[] = [];
  let listening = false;
  for await (const line of createInterface({ input: child.stdout })) {
    const rec = JSON.parse(line) as { level: number; msg: string };
    if (rec.level === WARN) warnings.push(rec.msg);
    // At warn, "listening" is not logged: the warning is then the sign it came up.
    if (rec.msg === 'dfdaemon listening' || (logLevel !== 'info' && NO_P2P.test(rec.msg))) {
      listening = true;
      child.kill('SIGTERM');
      break;
    }
  }
  const [code] = (await exited) as [number | null];
  return { code: listening ? null : code, stderr, warnings };
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfts-ops-startup-'));
});
after(() => rm(dir, { recursive: true, force: true }));

describe('npm start gives its dfdaemon a config that routes blobs through P2P', () => {
  it('uses config/dfdaemon.yml unless /etc/dragonfly/dfdaemon.yml exists, and that file sends blob GETs to P2P', () => {
    assert.deepEqual(dfdaemonArgs('127.0.0.1:8002', true), ['--node', '127.0.0.1:8002'], "the operator's own file wins");
    const args = dfdaemonArgs('127.0.0.1:8002', false);
    assert.deepEqual(args, ['--config', NPM_START_DFDAEMON_CONFIG, '--node', '127.0.0.1:8002']);
    const cfg = loadDfdaemonConfig({ argv: args, defaultFile: null, env: { HOME: dir } });
    assert.equal(cfg.configFile, NPM_START_DFDAEMON_CONFIG);
    const blob = `http://harbor.test/v2/library/app/blobs/sha256:${'a'.repeat(64)}`;
    assert.equal(routeAbsolute(blob, 'GET', cfg.proxies).kind, 'p2p');
    assert.equal(routeAbsolute('http://harbor.test/v2/library/app/manifests/latest', 'GET', cfg.proxies).kind, 'direct');
    assert.deepEqual(cfg.ignored, []);
  });
});

describe('dfdaemon start-up warning when nothing it proxies goes through P2P', { timeout: 60_000 }, () => {
  it('is logged for a config without proxies rules', async () => {
    const empty = join(dir, 'empty.yml');
    await writeFile(empty, '');
    const r = await runDfdaemon(['--config', empty, '--node', '127.0.0.1:1'], dir);
    assert.equal(r.code, null, r.stderr);
    assert.equal(r.warnings.filter((w) => NO_P2P.test(w)).length, 1, JSON.stringify(r.warnings));
    assert.match(r.warnings.find((w) => NO_P2P.test(w)) ?? '', /blobs\/sha256/, 'the warning says what rule to add');
  });

  it("is not logged for npm start's config or the user guide's three dfdaemon.yml files", async () => {
    const keys = join(dir, 'keys');
    await genCa({ out: keys, cn: 'ops test CA', days: 1 });
    const ca = await genCa({ out: join(dir, 'harbor-ca'), cn: 'harbor CA', days: 1 });
    await mkdir(join(dir, 'guide'), { recursive: true });
    await copyFile(ca.certFile, join(dir, 'guide', 'ca.crt'));
    const subst = {
      '<mysupernodehost></mysupernodehost>': '127.0.0.1',
      '<mysupernodehost>': '127.0.0.1',
      '<myharbor></myharbor>': 'harbor.test',
      '<myharbor_host>': 'harbor.test',
      '<myharbor>': 'harbor.test',
      '/keys/': `${keys}/`,
    };
    const configs = [
      dfdaemonArgs('127.0.0.1:1', false),
      ...(await Promise.all(['dfdaemon-http.yml', 'dfdaemon-https.yml', 'dfdaemon-selfsigned.yml'].map(async (f) => ['--config', await seedFile(f, join(dir, 'guide'), subst)]))),
    ];
    for (const argv of configs) {
      const r = await runDfdaemon(argv, dir);
      assert.equal(r.code, null, `${argv.join(' ')}: ${r.stderr}`);
      assert.deepEqual(r.warnings, [], argv.join(' '));
    }
  });
});

describe('dfdaemon start-up failures', { timeout: 60_000 }, () => {
  /** One line on stderr, naming what to fix. */
  const oneLine = (r: Run, want: RegExp) => {
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], want);
  };

  it('a workHome it cannot write: exit 1, one line naming the directory', async () => {
    const r = await runDfdaemon(['--workHome', '/dev/null/x', '--node', '127.0.0.1:1'], dir);
    assert.equal(r.code, 1, `expected exit 1, got ${r.code}: ${r.stderr}`);
    oneLine(r, /^dfdaemon: cannot write the piece cache \/dev\/null\/x\/dfdaemon\/data .*ENOTDIR/);
  });

  it('certpem with a key that is not its own: exit 2, naming keypem', async () => {
    const a = await genCa({ out: join(dir, 'tls-a'), cn: 'a', days: 1 });
    const b = await genCa({ out: join(dir, 'tls-b'), cn: 'b', days: 1 });
    const r = await runDfdaemon(['--certpem', a.certFile, '--keypem', b.keyFile, '--node', '127.0.0.1:1'], dir);
    assert.equal(r.code, 2, `expected exit 2, got ${r.code}: ${r.stderr}`);
    oneLine(r, /^dfdaemon: CONFIG_INVALID: keypem: cannot serve TLS/);
  });

  it('hijack_https with a key that is not its cert\'s: exit 2, naming hijack_https.key', async () => {
    const a = await genCa({ out: join(dir, 'hijack-a'), cn: 'a', days: 1 });
    const b = await genCa({ out: join(dir, 'hijack-b'), cn: 'b', days: 1 });
    const file = join(dir, 'hijack.yml');
    await writeFile(file, `proxies:\n  - regx: blobs/sha256.*\nhijack_https:\n  cert: ${a.certFile}\n  key: ${b.keyFile}\n  hosts:\n    - regx: harbor.test:443\n`);
    const r = await runDfdaemon(['--config', file, '--node', '127.0.0.1:1'], dir);
    assert.equal(r.code, 2, `expected exit 2, got ${r.code}: ${r.stderr}`);
    oneLine(r, new RegExp(`^dfdaemon: hijack_https\\.key: ${b.keyFile} does not belong to the certificate ${a.certFile}$`));
  });
});

describe('DF_LOG_LEVEL', { timeout: 60_000 }, () => {
  it('treats an empty value as unset, takes Harbor\'s "warning", and refuses anything else by name', () => {
    assert.equal(envLogLevel(''), undefined);
    assert.equal(envLogLevel('  '), undefined);
    assert.equal(envLogLevel(' WARNING '), 'warn');
    assert.equal(envLogLevel('debug'), 'debug');
    assert.throws(() => envLogLevel('verbose'), /DF_LOG_LEVEL: unknown log level "verbose" \(expected one of fatal, error, warn, info, debug, trace, silent\)/);
  });

  it('a daemon started with DF_LOG_LEVEL=warning runs and logs warnings; a bad value exits 2 naming the variable', async () => {
    const empty = join(dir, 'empty-level.yml');
    await writeFile(empty, '');
    const ok = await runDfdaemon(['--config', empty, '--node', '127.0.0.1:1'], dir, 'warning');
    assert.equal(ok.code, null, ok.stderr);
    assert.equal(ok.warnings.filter((w) => NO_P2P.test(w)).length, 1, JSON.stringify(ok.warnings));
    const bad = await runDfdaemon(['--config', empty, '--node', '127.0.0.1:1'], dir, 'loud');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^dfdaemon: CONFIG_INVALID: DF_LOG_LEVEL: unknown log level "loud"/m);
  });
});
