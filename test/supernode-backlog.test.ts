// A rollout registers hundreds of dfdaemons at once. Past a port's accept backlog the kernel
// drops their SYNs and they retry at 1, 3, 7 s, which a dfdaemon takes for a dead supernode; and
// Node accepts only one connection per turn of its event loop, so a burst waits in that queue.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { LISTEN_BACKLOG } from '../supernode/server.js';
import { useOrigin } from './helpers/sn-fixture.js';

/** The backlog a listening TCP port was given, as `ss` shows it (Send-Q of a LISTEN socket). */
function backlogOf(port: number): number {
  const line = execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' }).trim().split('\n')[0];
  return Number(line.trim().split(/\s+/)[2]);
}

describe('the supernode ports', () => {
  const ctx = useOrigin('sn-backlog', '');

  const cap = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
  // A kernel capping backlogs at 511 or less cannot tell the two apart (Linux's default is 4096).
  const skip = cap <= 511 ? `net.core.somaxconn is ${cap}` : false;

  it(`queue up to ${LISTEN_BACKLOG} connections (or the kernel's cap), not Node's default 511`, { skip }, () => {
    const want = Math.min(LISTEN_BACKLOG, cap);
    assert.equal(backlogOf(ctx.sn.apiPort), want, 'API port');
    assert.equal(backlogOf(ctx.sn.downloadPort), want, 'download port');
  });
});
