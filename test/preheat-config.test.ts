// The supernode.yml `preheat:` section: defaults, a full example, and a ConfigError naming the
// full key path for every bad value.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parse } from 'yaml';
import { parsePreheatSection, PREHEAT_DEFAULTS } from '../shared/config/preheat.js';
import { loadSupernodeConfig } from '../shared/config/supernode.js';
import { ConfigError } from '../shared/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'dfts-preheat-config-'));
const CA = join(dir, 'ca.crt');
writeFileSync(CA, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');

const section = (yaml: string) => parsePreheatSection(parse(yaml), 'preheat');

describe('preheat config', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('defaults when the section is absent, and through supernode.yml', () => {
    assert.equal(section(''), PREHEAT_DEFAULTS);
    const file = join(dir, 'supernode.yml');
    writeFileSync(file, 'base:\n  listenPort: 0\n  downloadPort: 0\n');
    const cfg = loadSupernodeConfig({ file, defaultFile: null });
    assert.deepEqual(cfg.preheat, PREHEAT_DEFAULTS);
    assert.equal(cfg.preheat.jobTimeout, 30 * 60_000);
    assert.equal(cfg.preheat.auth.mode, 'none');
  });

  it('reads a full section', () => {
    writeFileSync(join(dir, 'supernode-full.yml'), [
      'base: { listenPort: 0, downloadPort: 0 }',
      'preheat:',
      '  auth: { mode: bearer, token: s3cret }',
      '  platforms: [linux/amd64, linux/arm/v7]',
      '  jobTimeout: 10m',
      '  concurrency: 3',
      '  failedStatus: FAIL',
      '  insecure: true',
      `  certs: [${CA}]`,
      '  webhooks:',
      '    token: "Bearer hook"',
      '    scheme: http',
      '    registryAuth: { username: robot, password: pw }',
      '    rules:',
      '      - { repository: "library/**", tag: "{v*,latest}", registry: "https://harbor.example.com/" }',
      '      - { repository: "team/*" }',
      '',
    ].join('\n'));
    const p = loadSupernodeConfig({ file: join(dir, 'supernode-full.yml'), defaultFile: null }).preheat;
    assert.deepEqual(p.auth, { mode: 'bearer', token: 's3cret', username: '', password: '', header: null });
    assert.deepEqual(p.platforms, ['linux/amd64', 'linux/arm/v7']);
    assert.equal(p.jobTimeout, 600_000);
    assert.equal(p.concurrency, 3);
    assert.equal(p.failedStatus, 'FAIL');
    assert.equal(p.insecure, true);
    assert.match(p.rootCAs[0], /BEGIN CERTIFICATE/);
    assert.deepEqual(p.webhooks.registryAuth, { username: 'robot', password: 'pw', token: '' });
    assert.deepEqual(p.webhooks.rules, [
      { repository: 'library/**', tag: '{v*,latest}', registry: 'https://harbor.example.com' },
      { repository: 'team/*', tag: '', registry: '' },
    ]);
    assert.ok(Object.isFrozen(p.webhooks.rules[0]));
  });

  it('resolves relative certs next to supernode.yml, not the working directory', () => {
    // As in a container: /etc/dragonfly/supernode.yml with harbor-ca.crt beside it, cwd elsewhere.
    const etc = mkdtempSync(join(tmpdir(), 'dfts-preheat-etc-'));
    try {
      assert.notEqual(process.cwd(), etc);
      writeFileSync(join(etc, 'harbor-ca.crt'), '-----BEGIN CERTIFICATE-----\nRELATIVE\n-----END CERTIFICATE-----\n');
      const file = join(etc, 'supernode.yml');
      writeFileSync(file, `preheat:\n  certs: [harbor-ca.crt, ${CA}]\n`);
      const p = loadSupernodeConfig({ file, defaultFile: null }).preheat;
      assert.equal(p.rootCAs.length, 2);
      assert.match(p.rootCAs[0], /RELATIVE/);
      assert.match(p.rootCAs[1], /MIIB/, 'an absolute path is read as written');

      writeFileSync(file, 'preheat:\n  certs: [missing-ca.crt]\n');
      assert.throws(() => loadSupernodeConfig({ file, defaultFile: null }), (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.equal(err.key, 'preheat.certs[0]');
        assert.ok(err.message.includes(`cannot read ${join(etc, 'missing-ca.crt')}`), err.message);
        return true;
      });
    } finally {
      rmSync(etc, { recursive: true, force: true });
    }
  });

  it('reads each auth mode', () => {
    assert.deepEqual(section('auth: { mode: basic, username: u, password: p }').auth.username, 'u');
    assert.deepEqual(section('auth: { mode: header, header: { name: X-Key, value: v } }').auth.header, { name: 'X-Key', value: 'v' });
    assert.equal(section('webhooks: { token: h, registryAuth: { token: t } }').webhooks.registryAuth?.token, 't');
  });

  const bad: Array<[yaml: string, key: string, message: RegExp]> = [
    ['auth: { mode: oauth }', 'preheat.auth.mode', /expected one of "none", "bearer", "basic", "header"/],
    ['auth: { mode: bearer }', 'preheat.auth.token', /required when preheat.auth.mode is bearer/],
    ['auth: { mode: basic, username: u }', 'preheat.auth.password', /required/],
    ['auth: { mode: basic, username: "a:b", password: p }', 'preheat.auth.username', /cannot contain ":"/],
    ['auth: { mode: header }', 'preheat.auth.header', /required/],
    ['auth: { mode: header, header: { name: Host, value: x } }', 'preheat.auth.header.name', /cannot carry credentials/],
    ['auth: { mode: header, header: { name: "X Key", value: x } }', 'preheat.auth.header.name', /HTTP header name/],
    ['platforms: [amd64]', 'preheat.platforms[0]', /os\/arch\[\/variant\]/],
    ['jobTimeout: 0', 'preheat.jobTimeout', /greater than zero/],
    ['concurrency: 0', 'preheat.concurrency', /positive integer/],
    ['failedStatus: FAILURE', 'preheat.failedStatus', /"FAILED", "FAIL"/],
    ['certs: [/nonexistent/ca.crt]', 'preheat.certs[0]', /cannot read/],
    ['webhook: {}', 'preheat.webhook', /did you mean webhooks\?/],
    ['webhooks: { scheme: ftp }', 'preheat.webhooks.scheme', /"http", "https"/],
    ['webhooks: { rules: [{ repository: "**" }, { tag: "[a" }] }', 'preheat.webhooks.rules[1].tag', /invalid pattern "\[a": the \[ at offset 0 is never closed/],
    ['webhooks: { rules: [{ repository: "{a,b" }] }', 'preheat.webhooks.rules[0].repository', /never closed/],
    ['webhooks: { rules: [{ registry: "ftp://x" }] }', 'preheat.webhooks.rules[0].registry', /http\(s\) URL/],
    ['webhooks: { rules: [{ repo: x }] }', 'preheat.webhooks.rules[0].repo', /unknown key/],
    ['webhooks: { rules: [null] }', 'preheat.webhooks.rules[0]', /expected a mapping/],
    ['webhooks: { registryAuth: { username: u, password: p } }', 'preheat.webhooks.token', /required when preheat.webhooks.registryAuth is set/],
    ['webhooks: { registryAuth: { username: u, password: p, token: t } }', 'preheat.webhooks.registryAuth', /not both/],
    ['webhooks: { registryAuth: {} }', 'preheat.webhooks.registryAuth', /username and password, or token/],
    ['webhooks: { registryAuth: { username: u } }', 'preheat.webhooks.registryAuth.password', /required/],
    ['[]', 'preheat', /expected a mapping/],
  ];
  for (const [yaml, key, message] of bad) {
    it(`rejects ${yaml} naming ${key}`, () => {
      assert.throws(() => section(yaml), (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.equal(err.key, key);
        assert.match(err.message, message);
        assert.ok(err.message.startsWith(`${key}: `));
        return true;
      });
    });
  }
});
