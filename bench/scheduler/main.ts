// `npm run bench:scheduler`: 1,000 peers on one task of 256 pieces, run to completion through
// the real scheduler. Each policy runs in its own child process so its peak RSS is its own; a
// naive in-order, CDN-only policy is the baseline measured in the same run.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { simulate } from './sim.js';

/** Peak RSS of a real supernode process, started from ./bin on free ports, once it listens. */
async function idleSupernodeRssMB(): Promise<number> {
  const home = mkdtempSync(join(tmpdir(), 'dfts-bench-sn-'));
  const bin = fileURLToPath(new URL('../../../bin/supernode', import.meta.url));
  const child = spawn(bin, ['--home-dir', home, '--port', '0', '--download-port', '0', '--listen-ip', '127.0.0.1'], { stdio: 'ignore' });
  try {
    await sleep(3000);
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : -1;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(home, { recursive: true, force: true });
  }
}

const limits = { peerDownLimit: 4, peerUpLimit: 5, eliminationLimit: 5, failureCountLimit: 5, cdnTaskLoadLimit: 4, pieceTimeoutMs: 30_000, relayDepth: 0 };
const peers = Number(process.env.PEERS ?? 1000);
const pieces = Number(process.env.PIECES ?? 256);
const POLICIES = {
  naive: { label: 'naive baseline (in order, CDN only)', streaming: true, naive: true },
  rarest: { label: 'rarest-first (Dragonfly order)', streaming: false, naive: false },
  stream: { label: 'rarest-first + stream window (ours)', streaming: true, naive: false },
} as const;
type Policy = keyof typeof POLICIES;

function peakRssMB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : -1;
}

const child = process.argv[2] as Policy | undefined;
if (child) {
  const p = POLICIES[child];
  const r = simulate({ peers, pieces, limits, pieceMs: 40, streaming: p.streaming, naive: p.naive, poll: true });
  process.stdout.write(JSON.stringify({ ...r, peakRssMB: peakRssMB() }));
} else {
  const self = fileURLToPath(import.meta.url);
  const runs = (Object.keys(POLICIES) as Policy[]).map((k) => {
    const r = JSON.parse(execFileSync(process.execPath, ['--expose-gc', self, k], { encoding: 'utf8', maxBuffer: 1 << 20 }));
    return {
      policy: k,
      label: POLICIES[k].label,
      assignments: r.assignments,
      calls: r.scheduleCalls,
      cpuMs: Math.round(r.cpuMs),
      assignPerSec: Math.round(r.assignments / (r.cpuMs / 1000)),
      cdnShare: +(r.fromCdn / r.assignments).toFixed(4),
      simSeconds: +(r.simMs / 1000).toFixed(2),
      streamLagMs: +r.meanStreamLagMs.toFixed(1),
      headMs: +r.meanHeadMs.toFixed(1),
      peakRssMB: r.peakRssMB,
      stateHeapMB: +r.stateHeapMB.toFixed(1),
    };
  });
  const by = Object.fromEntries(runs.map((r) => [r.policy, r]));
  const idle = await idleSupernodeRssMB();
  const out = {
    bench: 'scheduler',
    peers,
    pieces,
    runs,
    supernode: { idleRssMB: idle, plusStateMB: +(idle + by.stream.stateHeapMB).toFixed(1) },
    ratios: {
      rateVsNaive: +(by.stream.assignPerSec / by.naive.assignPerSec).toFixed(3),
      cdnShareVsNaive: +(by.stream.cdnShare / by.naive.cdnShare).toFixed(4),
      streamLagWindowVsNone: +(by.stream.streamLagMs / Math.max(0.1, by.rarest.streamLagMs)).toFixed(3),
      swarmTimeWindowVsNone: +(by.stream.simSeconds / by.rarest.simSeconds).toFixed(3),
      headWindowVsNone: +(by.stream.headMs / by.rarest.headMs).toFixed(3),
    },
  };
  process.stdout.write(`${JSON.stringify(out)}\n\n`);
  process.stdout.write('| policy | assignments/s (1 core) | CDN share of pieces | swarm done (sim s) | mean in-order lag (sim ms) | first 8 pieces in order (sim ms) | peak RSS MB (process) | scheduler state heap MB |\n|---|---|---|---|---|---|---|---|\n');
  for (const r of runs) process.stdout.write(`| ${r.label} | ${r.assignPerSec} | ${r.cdnShare} | ${r.simSeconds} | ${r.streamLagMs} | ${r.headMs} | ${r.peakRssMB} | ${r.stateHeapMB} |\n`);
  process.stdout.write(`\nIdle ./bin/supernode VmHWM ${idle} MB; with the scheduler state of this run: ${out.supernode.plusStateMB} MB\n`);
}
