// The stream benchmark's table and its bench/results/stream.md.
import { cpus, totalmem } from 'node:os';

export interface StreamResult {
  blobBytes: number;
  runs: number;
  direct: { MBps: number; ttfbMs: number };
  dfdaemonCdnWarm: { MBps: number; ttfbMs: number };
  dfdaemonLocal: { MBps: number; ttfbMs: number };
  ratio: number;
  ratioLocal: number;
  rss: { peakMB: number; sampledMaxMB: number; uploadedMB: number; peersServed: number; peersFromPeersMB: number[] };
}

const verdict = (ok: boolean) => (ok ? '**holds**' : '**does not hold**');

export function report(r: StreamResult & Record<string, unknown>): { table: string; full: string } {
  const gib = (r.blobBytes / 1024 ** 3).toFixed(2);
  const table = [
    '| path | MB/s (median) | time to first byte, ms (median) | vs direct |',
    '|---|---|---|---|',
    `| direct from docker-registry | ${r.direct.MBps} | ${r.direct.ttfbMs} | 1 |`,
    `| through dfdaemon, P2P from the warm supernode CDN | ${r.dfdaemonCdnWarm.MBps} | ${r.dfdaemonCdnWarm.ttfbMs} | ${r.ratio} |`,
    `| through dfdaemon, blob already in its local cache | ${r.dfdaemonLocal.MBps} | ${r.dfdaemonLocal.ttfbMs} | ${r.ratioLocal} |`,
  ].join('\n');
  const cpu = cpus();
  const full = [
    '## Stream (`npm run bench:stream`)',
    '',
    `A ${gib} GiB random blob in Debian's docker-registry on loopback, read by a Node client that`,
    `counts and discards the bytes. Each path ran ${r.runs} times, interleaved, in the same run;`,
    'the medians are shown. "P2P from the warm supernode CDN": a fresh `./bin/dfdaemon` process,',
    'the supernode already holding the blob, so dfdaemon registers, fetches every piece from the',
    "supernode's download port, verifies each piece's sha256, writes it, and streams the file in",
    'order while checking the whole blob\'s sha256. "Local cache": a second GET on the same dfdaemon.',
    `Machine: ${cpu.length} × ${cpu[0]?.model ?? '?'}, ${Math.round(totalmem() / 1024 ** 3)} GiB.`,
    '',
    table,
    '',
    `Peak RSS: one fresh dfdaemon streams the blob to a client while four other dfdaemons fetch it`,
    `at the same time, the supernode handing them pieces from it. VmHWM of the dfdaemon process:`,
    `**${r.rss.peakMB} MB** (largest VmRSS sampled every 50 ms: ${r.rss.sampledMaxMB} MB). It uploaded`,
    `${r.rss.uploadedMB} MB, to ${r.rss.peersServed} of the 4 peers (their processes seen connected to its port by \`ss -p\`); the`,
    `peers took ${r.rss.peersFromPeersMB.join(', ')} MB from peers (it or each other).`,
    '',
    '```',
    JSON.stringify(r),
    '```',
    '',
    `- Streaming through dfdaemon at ≥ 0.8× direct: ${verdict(r.ratio >= 0.8)} (${r.ratio}× from the CDN, ${r.ratioLocal}× from the local cache).`,
    `- Time to first byte: ${r.dfdaemonCdnWarm.ttfbMs} ms through dfdaemon (cold dfdaemon, warm CDN) vs ${r.direct.ttfbMs} ms direct.`,
    `- dfdaemon peak RSS ≤ 100 MB while streaming and uploading to 4 peers: ${verdict(r.rss.peakMB <= 100 && r.rss.peersServed === 4)} (${r.rss.peakMB} MB, ${r.rss.peersServed} peers served).`,
    '',
  ].join('\n');
  return { table, full };
}
