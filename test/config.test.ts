import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, DfError, SourceAuthError, isDfError, sourceAuth, taskNotFound, toDfError } from '../shared/errors.js';
import { formatDuration, formatSize, parseDuration, parseSize } from '../shared/units.js';
import { loadSupernodeConfig } from '../shared/config/supernode.js';
import { loadDfdaemonConfig } from '../shared/config/dfdaemon.js';
import { expandNodes, parseDfgetFlags, parseNode } from '../shared/config/dfget-flags.js';

// dist/test/config.test.js -> repo root is two levels up.
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SEED_DIR = join(REPO, 'test', 'data', 'seed');
const GUIDE = resolve(REPO, '..', 'shared', 'seed', '000_57b3cd67031904b4.txt');
const MB = 1024 * 1024;
const GB = 1024 * MB;

const seed = (name: string): string => readFileSync(join(SEED_DIR, name), 'utf8');

/** Fenced yml/yaml blocks of the guide, with the fence's indentation removed from every line. */
function extractYamlBlocks(text: string): string[] {
  const lines = text.split('\n');
  const blocks: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^( *)```(yml|yaml)\s*$/.exec(lines[i]);
    if (open === null) continue;
    const indent = open[1];
    const close = new RegExp(`^${indent}\`\`\`\\s*$`);
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !close.test(lines[j]); j++) {
      const l = lines[j];
      assert.ok(l.trim() === '' || l.startsWith(indent), `guide line ${j + 1} breaks the block's indentation`);
      body.push(l.startsWith(indent) ? l.slice(indent.length) : l.trimStart());
    }
    blocks.push(body.join('\n') + '\n');
    i = j;
  }
  return blocks;
}

const SEED_PICKERS: Readonly<Record<string, (b: string) => boolean>> = {
  'supernode.yml': (b) => b.startsWith('# This file is the template of supernode configuration file.'),
  'docker-compose.supernode.yml': (b) => b.includes('image: dragonflyoss/supernode:'),
  'dfdaemon-http.yml': (b) => b.startsWith('registry_mirror:') && b.includes('<myharbor_host>'),
  'dfdaemon-https.yml': (b) => b.startsWith('registry_mirror:') && b.includes('<myharbor>:9443'),
  'dfdaemon-selfsigned.yml': (b) => b.startsWith('registry_mirror:') && b.includes('certs: ["ca.crt"]'),
  'docker-compose.dfclient.yml': (b) => b.startsWith('version: "2.4"') && b.includes('dfclient:'),
  'docker-stack.dfclient.yml': (b) => b.startsWith('version: "3.7"'),
};

const FAKE_CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const FAKE_KEY = '-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n';

/** A temp dir with keys/df.crt, keys/df.key and ca.crt; removed by cleanup(). */
function sandbox(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'df-config-'));
  mkdirSync(join(dir, 'keys'));
  writeFileSync(join(dir, 'keys', 'df.crt'), FAKE_CERT);
  writeFileSync(join(dir, 'keys', 'df.key'), FAKE_KEY);
  writeFileSync(join(dir, 'ca.crt'), FAKE_CERT);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Only placeholders and the /keys mount are replaced; everything else stays as in the guide. */
function substitute(text: string, dir: string): string {
  return text
    .replaceAll('<mysupernodehost></mysupernodehost>', 'supernode.test')
    .replaceAll('<mysupernodehost>', 'supernode.test')
    .replaceAll('<myharbor_host>', 'harbor.test:9443')
    .replaceAll('<myharbor></myharbor>', 'harbor.test')
    .replaceAll('<myharbor>', 'harbor.test')
    .replaceAll('/keys/', `${dir}/keys/`);
}

function writeConfig(dir: string, name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** Asserts fn throws a ConfigError whose key and message match. */
function throwsConfig(fn: () => unknown, key: string, message?: RegExp | string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.key, key, `key of: ${err.message}`);
    assert.equal(err.code, 'CONFIG_INVALID');
    if (typeof message === 'string') assert.equal(err.message, message);
    else if (message !== undefined) assert.match(err.message, message);
    return true;
  });
}

const HOME_ENV = { HOME: '/home/tester' };

describe('seed files', () => {
  it('match the blocks of the user guide', (t) => {
    if (!existsSync(GUIDE)) {
      t.skip(`guide not found at ${GUIDE}`);
      return;
    }
    const blocks = extractYamlBlocks(readFileSync(GUIDE, 'utf8'));
    for (const [name, pick] of Object.entries(SEED_PICKERS)) {
      const matches = blocks.filter(pick);
      assert.equal(matches.length, 1, `exactly one guide block for ${name}`);
      assert.equal(seed(name), matches[0], `${name} differs from the guide`);
    }
  });

  it('supernode.yml loads unchanged', () => {
    const c = loadSupernodeConfig({ file: join(SEED_DIR, 'supernode.yml'), defaultFile: null });
    assert.equal(c.listenPort, 8002);
    assert.equal(c.downloadPort, 8001);
    assert.equal(c.homeDir, '/home/admin/supernode');
    assert.equal(c.schedulerCorePoolSize, 10);
    assert.equal(c.peerUpLimit, 5);
    assert.equal(c.peerDownLimit, 4);
    assert.equal(c.eliminationLimit, 5);
    assert.equal(c.failureCountLimit, 5);
    assert.equal(c.systemReservedBandwidth, 20971520);
    assert.equal(c.maxBandwidth, 200 * MB);
    assert.equal(c.enableProfiler, false);
    assert.equal(c.debug, false);
    assert.equal(c.failAccessInterval, 180000);
    assert.equal(c.gcInitialDelay, 6000);
    assert.equal(c.gcMetaInterval, 120000);
    assert.equal(c.taskExpireTime, 180000);
    assert.equal(c.peerGCDelay, 180000);
    assert.equal(c.gcDiskInterval, 15000);
    assert.equal(c.youngGCThreshold, 100 * GB);
    assert.equal(c.fullGCThreshold, 5 * GB);
    assert.equal(c.intervalThreshold, 7200000);
    assert.equal(c.cdnPattern, 'local');
    assert.equal(c.advertiseIP, '');
    assert.equal(c.configFile, join(SEED_DIR, 'supernode.yml'));
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.logConfig));
    // schedulerCorePoolSize: 10 and enableProfiler: false ask for nothing beyond the defaults.
    assert.deepEqual(c.ignored, []);
  });

  it('supernode.yml with the compose command line', () => {
    const c = loadSupernodeConfig({ argv: ['--config', join(SEED_DIR, 'supernode.yml'), '--download-port=8001'], defaultFile: null });
    assert.equal(c.downloadPort, 8001);
    assert.equal(c.listenPort, 8002);
    assert.deepEqual(c.ignored, []);
  });

  it('dfdaemon, HTTP Harbor', () => {
    const { dir, cleanup } = sandbox();
    try {
      const file = writeConfig(dir, 'dfdaemon.yml', substitute(seed('dfdaemon-http.yml'), dir));
      const c = loadDfdaemonConfig({ file, defaultFile: null, env: HOME_ENV });
      assert.deepEqual(c.registryMirror, { remote: 'https://index.docker.io', insecure: false, certs: [], direct: false });
      assert.deepEqual(c.dfgetFlags, ['--node', 'supernode.test=1', '-f', 'Expires&Signature']);
      assert.deepEqual(c.dfget.nodes, [{ host: 'supernode.test', port: 8002, weight: 1, addr: 'supernode.test:8002' }]);
      assert.deepEqual(c.nodes, c.dfget.nodes);
      assert.deepEqual(c.dfget.filter, ['Expires', 'Signature']);
      assert.equal(c.proxies.length, 1);
      const [p] = c.proxies;
      assert.equal(p.useHttps, false);
      assert.equal(p.direct, false);
      assert.equal(p.redirect, '');
      assert.ok(p.regx.test('http://harbor.test:9443/v2/x/blobs/sha256:ab'));
      assert.ok(p.regx.test('/v2/x/blobs/sha256:ab'), 'a frozen regex still matches repeatedly');
      assert.ok(!p.regx.test('/v2/x/manifests/latest'));
      assert.ok(c.hijackHttps !== null);
      assert.equal(c.hijackHttps.enabled, false);
      assert.equal(c.hijackHttps.cert, null);
      assert.equal(c.hijackHttps.hosts.length, 1);
      assert.equal(c.hijackHttps.hosts[0].insecure, true);
      assert.deepEqual(c.hijackHttps.hosts[0].certs, []);
      assert.ok(c.hijackHttps.hosts[0].regx.test('harbor.test:9443'));
      assert.equal(c.port, 65001);
      assert.equal(c.peerPort, 0);
      assert.equal(c.ratelimit, 20 * MB);
      assert.equal(c.workHome, '/home/tester/.small-dragonfly');
      assert.equal(c.localrepo, '/home/tester/.small-dragonfly/dfdaemon/data');
      assert.ok(Object.isFrozen(c) && Object.isFrozen(c.proxies) && Object.isFrozen(c.proxies[0]) && Object.isFrozen(c.dfget.nodes));
      assert.deepEqual(c.ignored, [], 'the daemon reads both of its dfget_flags, --node and -f');
    } finally {
      cleanup();
    }
  });

  it('dfdaemon, HTTPS Harbor', () => {
    const { dir, cleanup } = sandbox();
    try {
      const file = writeConfig(dir, 'dfdaemon.yml', substitute(seed('dfdaemon-https.yml'), dir));
      const c = loadDfdaemonConfig({ file, defaultFile: null, env: HOME_ENV });
      assert.deepEqual(c.dfget.nodes, [{ host: 'supernode.test', port: 8002, weight: 1, addr: 'supernode.test:8002' }]);
      assert.ok(c.hijackHttps !== null);
      assert.equal(c.hijackHttps.enabled, true);
      assert.equal(c.hijackHttps.cert, join(dir, 'keys', 'df.crt'));
      assert.equal(c.hijackHttps.key, join(dir, 'keys', 'df.key'));
      assert.equal(c.hijackHttps.hosts[0].insecure, false);
      assert.ok(c.hijackHttps.hosts[0].regx.test('harbor.test:9443'));
      assert.ok(!c.hijackHttps.hosts[0].regx.test('harbor.test:443'));
      assert.deepEqual(c.ignored, []);
    } finally {
      cleanup();
    }
  });

  it('dfdaemon, self-signed HTTPS Harbor: relative certs resolve next to the file', () => {
    const { dir, cleanup } = sandbox();
    try {
      const file = writeConfig(dir, 'dfdaemon.yml', substitute(seed('dfdaemon-selfsigned.yml'), dir));
      const c = loadDfdaemonConfig({ file, defaultFile: null, env: HOME_ENV });
      assert.deepEqual(c.dfget.nodes.map((n) => n.addr), ['supernode.test:8002']);
      assert.ok(c.hijackHttps?.enabled);
      assert.deepEqual(c.hijackHttps.hosts[0].certs, [join(dir, 'ca.crt')]);
      assert.deepEqual(c.ignored, []);
    } finally {
      cleanup();
    }
  });

  it('dfdaemon seed with placeholders left in names the bad node', () => {
    const { dir, cleanup } = sandbox();
    try {
      const file = writeConfig(dir, 'dfdaemon.yml', seed('dfdaemon-http.yml'));
      throwsConfig(() => loadDfdaemonConfig({ file, defaultFile: null, env: HOME_ENV }), 'dfget_flags --node', /<mysupernodehost>/);
    } finally {
      cleanup();
    }
  });
});

describe('units', () => {
  it('parses sizes in base 1024', () => {
    assert.equal(parseSize('20M', 'k'), 20971520);
    assert.equal(parseSize('200MB', 'k'), 200 * MB);
    assert.equal(parseSize('5GB', 'k'), 5 * GB);
    assert.equal(parseSize('100G', 'k'), 100 * GB);
    assert.equal(parseSize('2g', 'k'), 2 * GB);
    assert.equal(parseSize('512k', 'k'), 512 * 1024);
    assert.equal(parseSize('7B', 'k'), 7);
    assert.equal(parseSize('4096', 'k'), 4096);
    assert.equal(parseSize(4096, 'k'), 4096);
    assert.equal(parseSize('1.5M', 'k'), 1572864);
    for (const bad of ['1.5', '-1', '20X', '20 MB', '', 'M', -1, 1.5, true, null]) {
      throwsConfig(() => parseSize(bad, 'base.maxBandwidth'), 'base.maxBandwidth');
    }
    throwsConfig(() => parseSize('20X', 'base.maxBandwidth'), 'base.maxBandwidth', /got "20X"/);
  });

  it('parses durations into milliseconds', () => {
    assert.equal(parseDuration('3m', 'k'), 180000);
    assert.equal(parseDuration('6s', 'k'), 6000);
    assert.equal(parseDuration('2m0s', 'k'), 120000);
    assert.equal(parseDuration('2h', 'k'), 7200000);
    assert.equal(parseDuration('1h30m', 'k'), 5400000);
    assert.equal(parseDuration('500ms', 'k'), 500);
    assert.equal(parseDuration('1.5h', 'k'), 5400000);
    assert.equal(parseDuration('0', 'k'), 0);
    assert.equal(parseDuration('30', 'k'), 30000, 'bare numbers are seconds');
    assert.equal(parseDuration(180, 'k'), 180000);
    for (const bad of ['', '5 m', '-1s', '3d', 'm', '1h-5m', -3, null, false]) {
      throwsConfig(() => parseDuration(bad, 'base.gcMetaInterval'), 'base.gcMetaInterval');
    }
  });

  it('formats sizes and durations the way Go prints them', () => {
    assert.equal(formatSize(20 * MB), '20MB');
    assert.equal(formatSize(1536 * 1024), '1536KB');
    assert.equal(formatSize(0), '0B');
    assert.equal(formatDuration(180000), '3m0s');
    assert.equal(formatDuration(7200000), '2h0m0s');
    assert.equal(formatDuration(500), '500ms');
    assert.equal(formatDuration(1500), '1.5s');
    for (const ms of [180000, 7200000, 500, 1500, 5400000]) assert.equal(parseDuration(formatDuration(ms), 'k'), ms);
  });
});

describe('config errors name the key', () => {
  const supernodeYaml = (yaml: string) => (): unknown => {
    const { dir, cleanup } = sandbox();
    try {
      return loadSupernodeConfig({ file: writeConfig(dir, 'supernode.yml', yaml), defaultFile: null });
    } finally {
      cleanup();
    }
  };
  const dfdaemonYaml = (yaml: string, argv: string[] = []) => (): unknown => {
    const { dir, cleanup } = sandbox();
    try {
      return loadDfdaemonConfig({ file: writeConfig(dir, 'dfdaemon.yml', yaml), argv, defaultFile: null, env: HOME_ENV });
    } finally {
      cleanup();
    }
  };

  it('supernode', () => {
    throwsConfig(supernodeYaml('base:\n  peerUpLimit: x\n'), 'base.peerUpLimit',
      'base.peerUpLimit: expected a positive integer, got "x"');
    throwsConfig(supernodeYaml('base:\n  peerUpLimt: 5\n'), 'base.peerUpLimt', /unknown key \(did you mean peerUpLimit\?\)/);
    throwsConfig(supernodeYaml('base:\n  gcDiskInterval: 0s\n'), 'base.gcDiskInterval', /greater than zero/);
    throwsConfig(supernodeYaml('bas:\n  peerUpLimit: 5\n'), 'bas', /unknown key/);
    throwsConfig(supernodeYaml('base:\n  maxBandwidth: 20X\n'), 'base.maxBandwidth', /got "20X"/);
    throwsConfig(supernodeYaml('base:\n  gcMetaInterval: 2 minutes\n'), 'base.gcMetaInterval', /got "2 minutes"/);
    throwsConfig(supernodeYaml('base:\n  listenPort: 70000\n'), 'base.listenPort', /between 0 and 65535/);
    throwsConfig(supernodeYaml('base:\n  peerDownLimit: -1\n'), 'base.peerDownLimit');
    throwsConfig(supernodeYaml('base:\n  debug: "yes please"\n'), 'base.debug');
    throwsConfig(supernodeYaml('base:\n  cdnPattern: nginx\n'), 'base.cdnPattern', /"local", "source"/);
    throwsConfig(supernodeYaml('base:\n  maxBandwidth: 20M\n'), 'base.maxBandwidth', /greater than base.systemReservedBandwidth/);
    throwsConfig(supernodeYaml('base:\n  IntervalThreshold: 2h\n  intervalThreshold: 1h\n'), 'base.intervalThreshold', /duplicates/);
    throwsConfig(supernodeYaml('base:\n  logConfig:\n    level: debug\n'), 'base.logConfig.level', /unknown key/);
    throwsConfig(supernodeYaml('base: [1]\n'), 'base', /expected a mapping/);
    throwsConfig(supernodeYaml('base:\n  listenPort: 1\n  listenPort: 2\n'), 'config', /invalid YAML/);
  });

  it('supernode accepts plugins, storages and the camelCase IntervalThreshold', () => {
    const c = supernodeYaml('base:\n  intervalThreshold: 1h\n  cdnPattern: source\nplugins:\n  storage:\n    - name: local\nstorages:\n  local: {}\n')() as ReturnType<typeof loadSupernodeConfig>;
    assert.equal(c.intervalThreshold, 3600000);
    assert.equal(c.cdnPattern, 'source');
  });

  it('dfdaemon', () => {
    throwsConfig(dfdaemonYaml('proxies:\n  - regx: "blobs/(sha256"\n'), 'proxies[0].regx', /invalid regular expression/);
    throwsConfig(dfdaemonYaml('proxies:\n  - regx: a\n  - regx: b\n    use_http: true\n'), 'proxies[1].use_http', /unknown key/);
    throwsConfig(dfdaemonYaml('proxies:\n  - direct: true\n'), 'proxies[0].regx', /required/);
    throwsConfig(dfdaemonYaml('registry_mirror:\n  remote: ftp://x\n'), 'registry_mirror.remote', /http\(s\) URL/);
    throwsConfig(dfdaemonYaml('registry_mirror:\n  certs: ["missing.crt"]\n'), 'registry_mirror.certs[0]', /cannot read/);
    throwsConfig(dfdaemonYaml('ratelimit: fast\n'), 'ratelimit', /got "fast"/);
    throwsConfig(dfdaemonYaml('hijack_https:\n  cert: keys/df.crt\n'), 'hijack_https.key', /required/);
    throwsConfig(dfdaemonYaml('hijack_https:\n  cert: keys/df.key\n  key: keys/df.key\n'), 'hijack_https.cert', /no PEM certificate/);
    throwsConfig(dfdaemonYaml('hijack_https:\n  hosts:\n    - regx: "("\n'), 'hijack_https.hosts[0].regx', /invalid regular expression/);
    throwsConfig(dfdaemonYaml('registry-mirror: {}\n'), 'registry-mirror', /unknown key/);
    throwsConfig(dfdaemonYaml('dfget_flags: ["--nodes", "a"]\n'), 'dfget_flags --nodes', /unknown flag/);
    throwsConfig(dfdaemonYaml('dfget_flags: ["-s", "lots"]\n'), 'dfget_flags -s', /got "lots"/);
    throwsConfig(dfdaemonYaml('supernodes: ["a.test:99999"]\n'), 'supernodes[0]', /port must be 1-65535/);
    throwsConfig(dfdaemonYaml('localrepo: relative/dir\n'), 'localrepo', /absolute path/);
    throwsConfig(dfdaemonYaml('port: 8080.5\n'), 'port');
  });

  it('unknown flags', () => {
    throwsConfig(() => loadSupernodeConfig({ argv: ['--nope'], defaultFile: null }), '--nope', /unknown flag/);
    throwsConfig(() => loadSupernodeConfig({ argv: ['--port'], defaultFile: null }), '--port', /needs a value/);
    throwsConfig(() => loadSupernodeConfig({ argv: ['stray'], defaultFile: null }), 'stray', /unexpected argument/);
    throwsConfig(() => loadSupernodeConfig({ argv: ['--port', 'x'], defaultFile: null }), '--port', /got "x"/);
    throwsConfig(() => loadDfdaemonConfig({ argv: ['--registry-mirror', 'x'], defaultFile: null, env: HOME_ENV }), '--registry-mirror', /unknown flag/);
    throwsConfig(() => parseDfgetFlags(['-z']), '-z', /unknown flag/);
    throwsConfig(() => parseDfgetFlags(['-p', 'bt']), '-p', /"p2p", "cdn", "source"/);
    throwsConfig(() => parseDfgetFlags(['--header', 'NoColon']), '--header');
    throwsConfig(() => parseDfgetFlags(['-n', 'a.test=0']), '-n', /weight/);
  });
});

describe('flag overrides', () => {
  it('supernode: defaults < file < flags', () => {
    const { dir, cleanup } = sandbox();
    try {
      const file = writeConfig(dir, 'sn.yml', 'base:\n  listenPort: 9002\n  downloadPort: 9001\n  homeDir: /srv/a\n');
      const fromFile = loadSupernodeConfig({ file, defaultFile: null });
      assert.equal(fromFile.listenPort, 9002);
      assert.equal(fromFile.downloadPort, 9001);
      const c = loadSupernodeConfig({
        argv: [`--config=${file}`, '--port', '7002', '--download-port=8001', '--home-dir', '/srv/b', '--advertise-ip=10.0.0.7', '--debug'],
        defaultFile: null,
      });
      assert.equal(c.listenPort, 7002);
      assert.equal(c.downloadPort, 8001);
      assert.equal(c.homeDir, '/srv/b');
      assert.equal(c.advertiseIP, '10.0.0.7');
      assert.equal(c.debug, true);
      assert.equal(loadSupernodeConfig({ argv: ['--debug=false'], defaultFile: null }).debug, false);
      throwsConfig(() => loadSupernodeConfig({ argv: ['--advertise-ip', 'host.test'], defaultFile: null }), '--advertise-ip');
    } finally {
      cleanup();
    }
  });

  it('supernode without a file uses the defaults', () => {
    const c = loadSupernodeConfig({ defaultFile: join(tmpdir(), 'no-such-dir-df', 'supernode.yml') });
    assert.equal(c.configFile, null);
    assert.equal(c.listenPort, 8002);
    assert.equal(c.maxBandwidth, 200 * MB);
  });

  it('dfdaemon: flags win over the file', () => {
    const { dir, cleanup } = sandbox();
    try {
      const file = writeConfig(dir, 'dfdaemon.yml', substitute(seed('dfdaemon-http.yml'), dir));
      const c = loadDfdaemonConfig({
        file,
        argv: ['--port', '65002', '--registry=https://harbor.test:9443', '--node', 'a.test,b.test:9000=2', '--node=c.test',
          '--ratelimit', '50M', '--localrepo', '/var/df/repo', '--verbose'],
        defaultFile: null,
        env: HOME_ENV,
      });
      assert.equal(c.port, 65002);
      assert.equal(c.registryMirror.remote, 'https://harbor.test:9443');
      assert.deepEqual(c.supernodes, ['a.test', 'b.test:9000=2', 'c.test']);
      assert.deepEqual(c.nodes.map((n) => [n.addr, n.weight]), [['a.test:8002', 1], ['b.test:9000', 2], ['c.test:8002', 1]]);
      assert.equal(c.ratelimit, 50 * MB);
      assert.equal(c.localrepo, '/var/df/repo');
      assert.equal(c.verbose, true);
      assert.deepEqual(c.dfget.nodes.map((n) => n.addr), ['supernode.test:8002'], 'dfget_flags stay as written');
    } finally {
      cleanup();
    }
  });

  it("dfdaemon: --node replaces the file's supernodes and its dfget_flags --node", () => {
    // A shared dfdaemon.yml may name a supernode that is gone where compose's command names another.
    const { dir, cleanup } = sandbox();
    try {
      const shared = writeConfig(dir, 'shared.yml', 'supernodes: [old.test:8002]\ndfget_flags: ["--node", "flags.test"]\n');
      const c = loadDfdaemonConfig({ file: shared, argv: ['--node', 'new.test:8002'], defaultFile: null, env: HOME_ENV });
      assert.deepEqual(c.nodes.map((n) => n.addr), ['new.test:8002']);
      assert.deepEqual(c.supernodes, ['new.test:8002']);
      assert.deepEqual(loadDfdaemonConfig({ file: shared, defaultFile: null, env: HOME_ENV }).nodes.map((n) => n.addr), ['old.test:8002']);

      const guide = writeConfig(dir, 'dfdaemon.yml', substitute(seed('dfdaemon-http.yml'), dir));
      const g = loadDfdaemonConfig({ file: guide, argv: ['--node=b.test,c.test:9000', '--node', 'd.test'], defaultFile: null, env: HOME_ENV });
      assert.deepEqual(g.nodes.map((n) => n.addr), ['b.test:8002', 'c.test:9000', 'd.test:8002'], 'command-line --nodes add up among themselves');
      assert.deepEqual(loadDfdaemonConfig({ file: guide, defaultFile: null, env: HOME_ENV }).nodes.map((n) => n.addr), ['supernode.test:8002']);
    } finally {
      cleanup();
    }
  });
});

describe('dfget flags', () => {
  it('parses the dfget command line', () => {
    const f = parseDfgetFlags([
      '-u', 'http://harbor.test:9443/v2/x/blobs/sha256:ab?Expires=1&Signature=2', '-o', '/tmp/out',
      '-n', 'a.test,b.test:9000=3', '--node', '10.0.0.1:8003', '--node=[::1]:8004=2',
      '--header', 'Authorization: Bearer t', '--header=X-A:b', '-f', 'Expires&Signature',
      '-m', 'D41D8CD98F00B204E9800998ECF8427E', '-i', 'id1', '--callsystem', 'dragonfly_preheat',
      '-s', '20M', '--totallimit', '40M', '--minrate', '64k', '-e', '30', '-p', 'cdn', '--notbs', '--dfdaemon',
      '--insecure', '--cacerts', 'a.pem,b.pem', '--cacerts=c.pem', '--ip', '10.0.0.9', '--port', '15001',
      '--expiretime', '3m0s', '--alivetime', '5m', '--home', '/root/.small-dragonfly', '--verbose',
    ]);
    assert.equal(f.url, 'http://harbor.test:9443/v2/x/blobs/sha256:ab?Expires=1&Signature=2');
    assert.equal(f.output, '/tmp/out');
    assert.deepEqual(f.nodes.map((n) => [n.host, n.port, n.weight, n.addr]), [
      ['a.test', 8002, 1, 'a.test:8002'], ['b.test', 9000, 3, 'b.test:9000'], ['10.0.0.1', 8003, 1, '10.0.0.1:8003'],
      ['::1', 8004, 2, '[::1]:8004'],
    ]);
    assert.deepEqual(f.headers, [{ name: 'Authorization', value: 'Bearer t' }, { name: 'X-A', value: 'b' }]);
    assert.deepEqual(f.filter, ['Expires', 'Signature']);
    assert.equal(f.md5, 'd41d8cd98f00b204e9800998ecf8427e');
    assert.equal(f.identifier, 'id1');
    assert.equal(f.callSystem, 'dragonfly_preheat');
    assert.equal(f.localLimit, 20 * MB);
    assert.equal(f.totalLimit, 40 * MB);
    assert.equal(f.minRate, 64 * 1024);
    assert.equal(f.timeout, 30000);
    assert.equal(f.pattern, 'cdn');
    assert.ok(f.notbs && f.dfdaemon && f.insecure && f.verbose);
    assert.deepEqual(f.cacerts, ['a.pem', 'b.pem', 'c.pem']);
    assert.equal(f.ip, '10.0.0.9');
    assert.equal(f.port, 15001);
    assert.equal(f.expireTime, 180000);
    assert.equal(f.aliveTime, 300000);
    assert.equal(f.home, '/root/.small-dragonfly');
    assert.ok(Object.isFrozen(f) && Object.isFrozen(f.nodes));
  });

  it('has dfget defaults', () => {
    const f = parseDfgetFlags([]);
    assert.equal(f.pattern, 'p2p');
    assert.equal(f.url, undefined);
    assert.equal(f.localLimit, undefined);
    assert.equal(f.expireTime, 180000);
    assert.equal(f.aliveTime, 300000);
    assert.deepEqual(f.nodes, []);
    assert.equal(parseDfgetFlags(['-e', '2m']).timeout, 120000);
  });

  it('expandNodes divides by the GCD, repeats and shuffles', () => {
    const nodes = [parseNode('a=2', 'n'), parseNode('b=4', 'n'), parseNode('c=6', 'n')];
    // random() -> 0 always swaps with index 0 (Fisher-Yates from the end).
    assert.deepEqual(expandNodes(nodes, () => 0), ['b:8002', 'b:8002', 'c:8002', 'c:8002', 'c:8002', 'a:8002']);
    // random() -> just below 1 never moves anything.
    assert.deepEqual(expandNodes(nodes, () => 0.999999), ['a:8002', 'b:8002', 'b:8002', 'c:8002', 'c:8002', 'c:8002']);
    const counts = new Map<string, number>();
    for (const n of expandNodes(nodes)) counts.set(n, (counts.get(n) ?? 0) + 1);
    assert.deepEqual(Object.fromEntries(counts), { 'a:8002': 1, 'b:8002': 2, 'c:8002': 3 });
    assert.deepEqual(expandNodes([parseNode('x:1=3', 'n')], () => 0.5), ['x:1']);
    assert.deepEqual(expandNodes([]), []);
  });
});

describe('errors', () => {
  it('carry stable codes and statuses', () => {
    const e = taskNotFound('abc');
    assert.ok(e instanceof DfError);
    assert.equal(e.code, 'TASK_NOT_FOUND');
    assert.equal(e.status, 404);
    assert.deepEqual(e.toJSON(), { code: 'TASK_NOT_FOUND', message: 'task abc not found' });
    assert.equal(JSON.stringify(e), '{"code":"TASK_NOT_FOUND","message":"task abc not found"}');

    const a = sourceAuth('https://user:pw@harbor.test/v2/x/blobs/sha256:ab?token=secret', 401, 'Bearer realm="x"');
    assert.ok(a instanceof SourceAuthError && a instanceof DfError);
    assert.equal(a.status, 502);
    assert.equal(a.upstreamStatus, 401);
    assert.ok(!a.message.includes('secret') && !a.message.includes('pw'));

    const c = new ConfigError('base.x', 'bad');
    assert.ok(isDfError(c, 'CONFIG_INVALID'));
    assert.ok(!(e instanceof ConfigError));

    const cause = new Error('boom');
    const w = toDfError(cause);
    assert.equal(w.code, 'INTERNAL');
    assert.equal(w.cause, cause);
    assert.equal(toDfError(e), e);
  });
});
