// scripts/install-deps.sh on a fresh minimal Debian: not root, no sudo, packages missing. It must
// say what to do and exit 1, not die on "sudo: command not found".
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { onPath, REPO_ROOT } from './helpers/e2e.js';

const NOBODY = 65534;

describe('install-deps.sh without root and without sudo', () => {
  it('exits 1 naming the missing packages and how to install them', async () => {
    // A PATH holding only what the script needs before it installs anything, and a dpkg-query
    // that reports every package missing: no sudo whatever this machine has installed.
    const bin = await mkdtemp(join(tmpdir(), 'dfts-ops-deps-'));
    try {
      await chmod(bin, 0o755);
      for (const tool of ['grep', 'id']) {
        const found = onPath(tool);
        assert.ok(found, `${tool} is not on PATH`);
        await symlink(found, join(bin, tool));
      }
      await writeFile(join(bin, 'dpkg-query'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
      const script = join(REPO_ROOT, 'scripts', 'install-deps.sh');
      const bash = onPath('bash');
      assert.ok(bash, 'bash is not on PATH');
      // As root, drop to nobody: the script must see a non-root user, as on a fresh machine.
      const setpriv = onPath('setpriv');
      if (process.getuid?.() === 0) assert.ok(setpriv, 'setpriv (util-linux) is not on PATH');
      const [cmd, args] = process.getuid?.() === 0
        ? [setpriv as string, [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', bash, script]]
        : [bash, [script]];
      const r = spawnSync(cmd, args, { encoding: 'utf8', env: { PATH: bin, LANG: 'C' }, timeout: 30_000 });
      assert.ifError(r.error);
      assert.equal(r.status, 1, `status ${r.status}:\n${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /^install-deps: missing docker-registry docker\.io .*needs root, and sudo is not installed\.$/m);
      assert.match(r.stderr, /run as root/);
      assert.doesNotMatch(r.stderr, /command not found/);
    } finally {
      await rm(bin, { recursive: true, force: true });
    }
  });
});
