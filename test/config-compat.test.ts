// Dragonfly 1.x command lines and YAML that must load unchanged, and `dfdaemon gen-ca`'s
// refusal to replace a CA that Docker hosts already trust.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../shared/errors.js';
import { loadSupernodeConfig } from '../shared/config/supernode.js';
import { loadDfdaemonConfig } from '../shared/config/dfdaemon.js';
import { parseDfgetFlags } from '../shared/config/dfget-flags.js';
import { genCa, parseGenCaArgs } from '../dfdaemon/cli/gen-ca.js';

const HOME_ENV = { HOME: '/home/tester' };
const MIN = 60_000;
const DFDAEMON_MAIN = fileURLToPath(new URL('../dfdaemon/main.js', import.meta.url));
const SUPERNODE_MAIN = fileURLToPath(new URL('../supernode/main.js', import.meta.url));

function throwsConfig(fn: () => unknown, key: string, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.key, key, `key of: ${err.message}`);
    if (message !== undefined) assert.match(err.message, message);
    return true;
  });
}

function withDir<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'df-compat-'));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const supernode = (argv: string[]) => loadSupernodeConfig({ argv, defaultFile: null });
const dfdaemon = (argv: string[], yaml?: string) => withDir((dir) => {
  const file = yaml === undefined ? undefined : join(dir, 'dfdaemon.yml');
  if (file !== undefined) writeFileSync(file, yaml as string);
  return loadDfdaemonConfig({ file, argv, defaultFile: null, env: HOME_ENV });
});

describe('Dragonfly 1.0 supernode flags', () => {
  it('are aliases of our settings', () => {
    const c = supernode([
      '--up-limit', '7', '--down-limit=3', '-D', '--pool-size', '20', '--fail-access-interval', '1m',
      '--gc-initial-delay=10s', '--gc-meta-interval', '30s', '--task-expire-time', '5m', '--peer-gc-delay', '4m',
    ]);
    assert.equal(c.peerUpLimit, 7);
    assert.equal(c.peerDownLimit, 3);
    assert.equal(c.debug, true);
    assert.equal(c.schedulerCorePoolSize, 20);
    assert.equal(c.failAccessInterval, MIN);
    assert.equal(c.gcInitialDelay, 10_000);
    assert.equal(c.gcMetaInterval, 30_000);
    assert.equal(c.taskExpireTime, 5 * MIN);
    assert.equal(c.peerGCDelay, 4 * MIN);
    assert.equal(supernode(['-D=false']).debug, false);
  });

  it('report bad values under the flag as written', () => {
    throwsConfig(() => supernode(['--up-limit', 'x']), '--up-limit', /positive integer/);
    throwsConfig(() => supernode(['--gc-meta-interval', '0s']), '--gc-meta-interval', /greater than zero/);
  });
});

describe('Dragonfly dfdaemon flags', () => {
  it('--urlfilter, --notbs and --callsystem set the dfget options and win over dfget_flags', () => {
    const yaml = 'dfget_flags: ["--node", "sn.test", "-f", "Expires&Signature"]\n';
    const c = dfdaemon(['--urlfilter', 'Signature&Expires&OSSAccessKeyId', '--notbs', '--callsystem=ci'], yaml);
    assert.deepEqual(c.dfget.filter, ['Signature', 'Expires', 'OSSAccessKeyId']);
    assert.equal(c.dfget.notbs, true);
    assert.equal(c.dfget.callSystem, 'ci');
    assert.deepEqual(c.dfgetFlags, ['--node', 'sn.test', '-f', 'Expires&Signature'], 'dfget_flags stay as written');
    assert.deepEqual(dfdaemon([], yaml).dfget.filter, ['Expires', 'Signature']);
    assert.equal(dfdaemon(['--notbs=false']).dfget.notbs, false);
  });
});

describe('YAML 1.1 booleans', () => {
  it('load from supernode.yml and dfdaemon.yml in any case', () => {
    const sn = withDir((dir) => {
      const file = join(dir, 'supernode.yml');
      writeFileSync(file, 'base:\n  debug: yes\n  enableProfiler: On\npreheat:\n  enabled: Y\n');
      return loadSupernodeConfig({ file, defaultFile: null });
    });
    assert.equal(sn.debug, true);
    assert.equal(sn.enableProfiler, true);
    assert.equal(sn.preheat.enabled, true);
    const df = dfdaemon([], 'verbose: YES\nstreamMode: off\nregistry_mirror:\n  insecure: n\n  direct: on\n');
    assert.equal(df.verbose, true);
    assert.equal(df.streamMode, false);
    assert.equal(df.registryMirror.insecure, false);
    assert.equal(df.registryMirror.direct, true);
  });

  it('are accepted as flag values and other words still fail', () => {
    assert.equal(supernode(['--debug=yes']).debug, true);
    assert.equal(dfdaemon(['--verbose=on']).verbose, true);
    assert.equal(parseDfgetFlags(['--notbs=No']).notbs, false);
    throwsConfig(() => supernode(['--profiler=maybe']), '--profiler', /got "maybe"/);
  });
});

/** Runs a daemon until it logs that it is listening; returns the log records up to there. */
async function startupLog(main: string, argv: string[]): Promise<Array<{ level: number; msg: string }>> {
  const child = spawn(process.execPath, [main, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
  try {
    const records: Array<{ level: number; msg: string }> = [];
    for await (const line of createInterface({ input: child.stdout })) {
      const rec = JSON.parse(line) as { level: number; msg: string };
      records.push(rec);
      if (rec.msg.endsWith(' listening')) return records;
    }
    throw new Error(`${main} exited before listening: ${stderr}`);
  } finally {
    if (child.exitCode === null) {
      child.kill();
      await once(child, 'exit');
    }
  }
}

const WARN = 40;

describe('settings we do not act on', () => {
  it('supernode: each is reported with its reason, from the file or a flag', () => {
    const c = withDir((dir) => {
      const file = join(dir, 'supernode.yml');
      writeFileSync(file, [
        'base:',
        '  cdnPattern: source',
        '  schedulerCorePoolSize: 20',
        '  linkLimit: 10M',
        '  enableProfiler: true',
        '  maxSeedPerObject: 8',
        '  logConfig: { path: /var/log/supernode.log }',
        'plugins: { sourcePlugin: { enabled: true } }',
        'storages: { local: { baseDir: /data } }',
        '',
      ].join('\n'));
      return loadSupernodeConfig({ file, defaultFile: null });
    });
    assert.deepEqual(c.ignored, [
      'plugins: ignored; the supernode has no plugins',
      'storages: ignored; pieces are stored under base.homeDir',
      'cdnPattern: source is not supported; the CDN always caches',
      'schedulerCorePoolSize: ignored (unused in Dragonfly 1.x too)',
      'linkLimit: ignored (unused in Dragonfly 1.x too)',
      'enableProfiler: ignored; the supernode has no profiler',
      'maxSeedPerObject: ignored; the supernode does not use it',
      'logConfig: ignored; logs go to standard output, unrotated',
    ]);
    assert.deepEqual(supernode(['--cdn-pattern=source', '--pool-size', '20', '--profiler']).ignored, [
      'cdnPattern: source is not supported; the CDN always caches',
      'schedulerCorePoolSize: ignored (unused in Dragonfly 1.x too)',
      'enableProfiler: ignored; the supernode has no profiler',
    ]);
    const asked = withDir((dir) => {
      const file = join(dir, 'supernode.yml');
      writeFileSync(file, 'base:\n  cdnPattern: local\n  schedulerCorePoolSize: 10\n  enableProfiler: false\n  logConfig: {}\nplugins: {}\nstorages:\n');
      return loadSupernodeConfig({ file, defaultFile: null });
    });
    assert.deepEqual(asked.ignored, [], 'values that ask for what happens anyway are not reported');
  });

  it('dfdaemon: each is reported with its reason, dfget flags it reads are not', () => {
    const c = withDir((dir) => {
      const file = join(dir, 'dfdaemon.yml');
      writeFileSync(file, [
        'streamMode: true',
        'maxprocs: 8',
        'logConfig: { path: /var/log/dfdaemon.log }',
        'dfpath: /opt/dragonfly/df-client/dfget',
        'hostIp: 10.0.0.1',
        'dfget_flags: ["--node", "sn.test", "-f", "Expires", "-s", "10M", "--totallimit", "20M", "--notbs", "--expiretime", "5m",',
        '  "--dfdaemon", "--header", "X-A: 1", "--header", "X-B: 2", "--insecure", "--cacerts", "ca.crt", "-e", "10m",',
        '  "--minrate", "1M", "-p", "source", "--callsystem", "ci", "--verbose=false"]',
        '',
      ].join('\n'));
      return loadDfdaemonConfig({ file, defaultFile: null, env: HOME_ENV });
    });
    assert.deepEqual(c.ignored, [
      'streamMode: ignored; blobs always stream to Docker as pieces arrive, and peers are served in-process',
      'maxprocs: ignored; Node.js has no GOMAXPROCS to set',
      'logConfig: ignored; logs go to standard output, unrotated',
      'dfpath: ignored; dfdaemon downloads in-process and runs no dfget',
      'hostIp: ignored (as in Dragonfly); localIP sets the address peers reach',
      "dfget_flags --header: ignored; each request's own headers are forwarded",
      'dfget_flags --insecure: ignored; set insecure under registry_mirror or hijack_https.hosts',
      'dfget_flags --cacerts: ignored; set certs under registry_mirror or hijack_https.hosts',
      'dfget_flags -e: ignored; dfdaemon does not use it',
      'dfget_flags --minrate: ignored; dfdaemon does not use it',
      'dfget_flags -p: ignored; downloads always go through the supernode (p2p)',
      'dfget_flags --callsystem: ignored; dfdaemon does not use it',
    ]);
    assert.deepEqual(dfdaemon(['--streamMode', '--maxprocs', '2', '--callsystem', 'ci']).ignored, [
      'streamMode: ignored; blobs always stream to Docker as pieces arrive, and peers are served in-process',
      'maxprocs: ignored; Node.js has no GOMAXPROCS to set',
      '--callsystem: ignored; dfdaemon does not use it',
    ]);
    assert.deepEqual(dfdaemon([], 'streamMode: false\nmaxprocs: 4\nhostIp: 127.0.0.1\nlogConfig: {}\n').ignored, []);
  });

  it('are logged once each as warnings when the daemons start', { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'df-compat-warn-'));
    try {
      writeFileSync(join(dir, 'sn.yml'), `base:\n  cdnPattern: source\n  listenPort: 0\n  downloadPort: 0\n  homeDir: ${join(dir, 'sn')}\n`);
      const sn = await startupLog(SUPERNODE_MAIN, ['--config', join(dir, 'sn.yml'), '--profiler']);
      assert.deepEqual(sn.filter((r) => r.level === WARN).map((r) => r.msg), [
        'cdnPattern: source is not supported; the CDN always caches',
        'enableProfiler: ignored; the supernode has no profiler',
      ]);

      // With a proxies rule: without one the dfdaemon also warns that nothing goes through P2P.
      writeFileSync(join(dir, 'df.yml'), `streamMode: true\nport: 0\nworkHome: ${dir}\nsupernodes: [127.0.0.1:1]\nproxies: [{regx: blobs/sha256.*}]\n`);
      const df = await startupLog(DFDAEMON_MAIN, ['--config', join(dir, 'df.yml')]);
      assert.deepEqual(df.filter((r) => r.level === WARN).map((r) => r.msg), [
        'streamMode: ignored; blobs always stream to Docker as pieces arrive, and peers are served in-process',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('dfdaemon gen-ca', () => {
  it('names the flag in argument errors', () => {
    throwsConfig(() => parseGenCaArgs(['--bogus', 'x']), '--bogus', /unknown flag/);
    throwsConfig(() => parseGenCaArgs(['--days', 'ten']), '--days', /got "ten"/);
    throwsConfig(() => parseGenCaArgs(['--out']), '--out', /needs a value/);
    assert.equal(parseGenCaArgs(['--out', 'k', '--force']).force, true);
  });

  it('--help prints the usage and succeeds without writing anything', () => {
    const help = (usage: string): never => {
      throw Object.assign(new Error('help'), { usage });
    };
    assert.throws(() => parseGenCaArgs(['--help'], help), { usage: /usage: dfdaemon gen-ca/ });
    withDir((dir) => {
      const r = spawnSync(process.execPath, [DFDAEMON_MAIN, 'gen-ca', '--help'], { cwd: dir, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /usage: dfdaemon gen-ca .*--force/);
      assert.equal(existsSync(join(dir, 'df.key')), false);
    });
  });

  it('refuses to replace an existing CA unless forced', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'df-compat-ca-'));
    try {
      const first = await genCa({ out: dir, cn: 'first', days: 1 });
      const key = readFileSync(first.keyFile, 'utf8');
      const cert = readFileSync(first.certFile, 'utf8');
      await assert.rejects(genCa({ out: dir, cn: 'second', days: 1 }), (err: Error) => {
        assert.equal(err.message, `${first.keyFile} already exists; pass --force to replace it`);
        return true;
      });
      assert.equal(readFileSync(first.keyFile, 'utf8'), key);
      assert.equal(readFileSync(first.certFile, 'utf8'), cert);

      const r = spawnSync(process.execPath, [DFDAEMON_MAIN, 'gen-ca', '--out', dir], { encoding: 'utf8' });
      assert.equal(r.status, 2);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /df\.key already exists/);

      await genCa({ out: dir, cn: 'second', days: 1, force: true });
      assert.notEqual(readFileSync(first.keyFile, 'utf8'), key);
      assert.notEqual(readFileSync(first.certFile, 'utf8'), cert);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
