// Markdown tables, the target check and a hand-written SVG chart from the runs' JSON.
import type { ImageInfo, Mode, RunResult } from './run.js';

/** First line of <out>.jsonl: what the runs below it were measured on. */
export interface Meta {
  kind: 'meta';
  command: string;
  date: string;
  code: string;
  nodeOptions: string;
  machine: string;
  rate: string;
  rateBps: number;
  rateCheck: Record<string, number>;
  images: ImageInfo[];
  /** skopeo's destination transport; absent in runs from before --dest (dir:). */
  dest?: 'dir' | 'oci';
}

const MODE_LABEL: Record<Mode, string> = { direct: 'direct', proxy: 'pull-through cache', p2p: 'P2P (dragonfly-ts)' };
const f = (x: number | null | undefined, d = 1) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(d));

function find(rs: RunResult[], image: string, n: number, mode: Mode): RunResult | undefined {
  return rs.filter((r) => r.image === image && r.n === n && r.mode === mode).pop();
}

export function resultsTable(rs: RunResult[]): string {
  const rows = [
    '| image | N | mode | wall s | wall/T* | host p50 s | host p99 s | origin egress (copies, iface / registry log) | direct/this | CPU busy (saturated; other sessions) | peak RSS MB (max) | CPU s supernode / dfdaemons / skopeo | verified |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rs) {
    const direct = find(rs, r.image, r.n, 'direct');
    const speed = direct?.wall && r.wall ? direct.wall / r.wall : null;
    const sn = r.procs.find((p) => p.name === 'supernode');
    const dfs = r.procs.filter((p) => p.name.startsWith('dfdaemon'));
    const sk = r.cpu.bySec?.skopeo;
    const cpuS = r.mode === 'p2p' ? `${f(sn?.cpuSec)} / ${f(dfs.reduce((a, p) => a + p.cpuSec, 0))} / ${f(sk)}` : `– / – / ${f(sk)}`;
    const err = r.errors.length ? ` (${r.errors.length} errors)` : '';
    rows.push(
      `| ${r.image} | ${r.n} | ${MODE_LABEL[r.mode]} | ${f(r.wall)}${err} | ${f(r.wallOverTStar, 2)} | ${f(r.hostP50)} | ${f(r.hostP99)} | ${f(r.egressCopies, 3)} / ${f(r.registryBlobCopies, 3)} | ${f(speed, 2)} | ${f(r.cpu.mean * 100, 0)}% (${f(r.cpu.saturated * 100, 0)}%; ${f(r.cpu.foreign, 2)} cores) | ${f(r.maxRssMB, 0)} | ${cpuS} | ${r.verified ? 'yes' : 'NO'} |`,
    );
  }
  return rows.join('\n');
}

export function p2pTable(rs: RunResult[]): string {
  const rows = [
    '| image | N | origin→CDN s (Mbit/s) | regist. ms p50 | 1st piece s p50 | last piece s p50 / max | big blob streamed s p50 | rest after it s p50 | wall s | piece bytes from CDN | piece ms p50 CDN / peer | /peer/task ms p50 / p99 (long-poll p50) | pieces in flight per peer, max (median) | idle s mean | link use mean | CDN pieces in flight max | ELU max sn / dfd | loop lag p99 max ms |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rs.filter((x) => x.mode === 'p2p' && x.trace)) {
    const t = r.trace!;
    const ps = t.peers;
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
    const o = [...t.origin].sort((a, b) => b.bytes - a.bytes)[0];
    const m = r.metrics;
    const cdnShare = m ? m.pieceBytesFromSupernode / Math.max(1, m.pieceBytesFromSupernode + m.pieceBytesFromPeers) : null;
    const imm = ps.flatMap((p) => (p.taskImmediate.n ? [p.taskImmediate] : []));
    // Into dir: skopeo copies blobs one after another, so whatever follows the big blob is serial.
    const rest = ps.map((p, i) => r.hostTimes[i] - p.streamEndAt).filter((x) => x >= 0);
    rows.push(
      `| ${r.image} | ${r.n} | ${o ? `${f(o.startAt, 2)}–${f(o.endAt, 2)} (${f(o.mbit, 0)})` : '–'} | ${f(med(ps.map((p) => p.registerMs)), 0)} | ${f(med(ps.map((p) => p.firstPieceAt)), 2)} | ${f(med(ps.map((p) => p.lastPieceAt)), 2)} / ${f(Math.max(...ps.map((p) => p.lastPieceAt)), 2)} | ${f(med(ps.map((p) => p.streamEndAt)), 2)} | ${f(rest.length ? med(rest) : null, 2)} | ${f(r.wall, 2)} | ${cdnShare === null ? '–' : `${f(cdnShare * 100, 0)}% (${f(m!.pieceBytesFromSupernode / r.imageBytes, 2)} copies)`} | ${f(med(ps.filter((p) => p.fromCdn.n).map((p) => p.fromCdn.p50)), 0)} / ${f(med(ps.filter((p) => p.fromPeers.n).map((p) => p.fromPeers.p50)), 0)} | ${f(med(imm.map((d) => d.p50)), 0)} / ${f(Math.max(...imm.map((d) => d.p99)), 0)} (${f(med(ps.map((p) => p.taskLongPoll.p50)), 0)}) | ${ps[0]?.maxInFlight === undefined ? '–' : `${Math.max(...ps.map((p) => p.maxInFlight))} (${med(ps.map((p) => p.maxInFlight))})`} | ${f(ps.reduce((a, p) => a + p.idle, 0) / ps.length, 2)} | ${f(ps.reduce((a, p) => a + p.linkUse, 0) / ps.length, 2)} | ${t.cdnMaxConcurrent} | ${f(t.snEluMax, 2)} / ${f(Math.max(...ps.map((p) => p.eluMax)), 2)} | ${f(Math.max(t.snLagP99Max, ...ps.map((p) => p.lagP99Max)), 0)} |`,
    );
  }
  return rows.join('\n');
}

export function targets(rs: RunResult[]): string {
  const out: string[] = [];
  const line = (ok: boolean | null, what: string, got: string) => out.push(`- ${ok === null ? 'not measured' : ok ? 'HOLDS' : 'MISSED'}: ${what}: ${got}`);
  const p8 = find(rs, 'small', 8, 'p2p');
  line(p8 ? p8.wallOverTStar !== null && p8.wallOverTStar <= 1.3 : null, 'N=8, 64 MiB image, P2P wall ≤ 1.3×T*', p8 ? `${f(p8.wall, 2)} s = ${f(p8.wallOverTStar, 2)}×T*` : '–');
  line(p8 ? p8.egressCopies <= 1.05 : null, 'N=8 registry egress ≤ 1.05 image copies', p8 ? `${f(p8.egressCopies, 3)} (registry log: ${f(p8.registryBlobCopies, 3)})` : '–');
  const p16 = find(rs, 'small', 16, 'p2p');
  line(p16 ? p16.wallOverTStar !== null && p16.wallOverTStar <= 1.5 : null, 'N=16 P2P wall ≤ 1.5×T*', p16 ? `${f(p16.wall, 2)} s = ${f(p16.wallOverTStar, 2)}×T*` : '–');
  line(p16 ? p16.egressCopies <= 1.05 : null, 'N=16 registry egress ≤ 1.05 copies', p16 ? f(p16.egressCopies, 3) : '–');
  for (const img of ['small', 'large']) {
    const p1 = find(rs, img, 1, 'p2p');
    const d1 = find(rs, img, 1, 'direct');
    const ok = p1?.wall && d1?.wall ? p1.wall <= 1.1 * d1.wall : null;
    line(ok, `N=1 cold (${img}): P2P ≤ 1.1×direct`, p1 && d1 ? `${f(p1.wall, 2)} s vs ${f(d1.wall, 2)} s = ${f(p1.wall && d1.wall ? p1.wall / d1.wall : null, 2)}×` : '–');
  }
  const proj = rs.flatMap((r) => r.procs);
  const worst = proj.sort((a, b) => b.peakRssMB - a.peakRssMB)[0];
  line(proj.length ? worst.peakRssMB <= 100 : null, 'no project process above 100 MB peak RSS', worst ? `max ${f(worst.peakRssMB, 0)} MB (${worst.name})` : '–');
  line(rs.length ? rs.every((r) => r.verified) : null, 'every host’s pulled blobs verify', `${rs.filter((r) => r.verified).length}/${rs.length} runs`);
  return out.join('\n');
}

/** Time against N on a log scale (direct grows ~N×, P2P should stay flat), one panel per image. */
export function chart(rs: RunResult[]): string {
  const images = [...new Set(rs.map((r) => r.image))];
  const ns = [...new Set(rs.map((r) => r.n))].sort((a, b) => a - b);
  const W = 460, H = 320, L = 60, R = 20, T = 40, B = 50;
  const colors: Record<Mode, string> = { direct: '#d62728', proxy: '#ff7f0e', p2p: '#1f77b4' };
  const vals = rs.flatMap((r) => [r.wall ?? 0, r.tStar]).filter((v) => v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...vals))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...vals))));
  const y = (v: number) => T + (H - T - B) * (1 - (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)));
  const x = (n: number) => L + ((W - L - R) * ns.indexOf(n)) / Math.max(1, ns.length - 1);
  const parts: string[] = [];
  images.forEach((img, k) => {
    const ox = k * W;
    const g: string[] = [`<g transform="translate(${ox},0)">`, `<text x="${W / 2}" y="20" text-anchor="middle" font-weight="bold">${img} image (${f(rs.find((r) => r.image === img)!.imageBytes / 1048576, 0)} MiB)</text>`];
    for (let d = lo; d <= hi; d *= 10) {
      for (const m of [1, 2, 5]) {
        const v = d * m;
        if (v > hi) break;
        g.push(`<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/><text x="${L - 6}" y="${y(v) + 4}" text-anchor="end" font-size="11">${v}</text>`);
      }
    }
    for (const n of ns) g.push(`<text x="${x(n)}" y="${H - B + 18}" text-anchor="middle" font-size="11">${n}</text>`);
    g.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle" font-size="12">hosts (N)</text>`);
    g.push(`<text transform="translate(14,${(T + H - B) / 2}) rotate(-90)" text-anchor="middle" font-size="12">wall time, s (log)</text>`);
    const tStar = rs.find((r) => r.image === img)!.tStar;
    g.push(`<line x1="${L}" x2="${W - R}" y1="${y(tStar)}" y2="${y(tStar)}" stroke="#000" stroke-dasharray="4 3"/><text x="${W - R}" y="${y(tStar) - 4}" text-anchor="end" font-size="11">T* = ${f(tStar)} s</text>`);
    for (const mode of ['direct', 'proxy', 'p2p'] as Mode[]) {
      const pts = ns.map((n) => find(rs, img, n, mode)).filter((r): r is RunResult => !!r?.wall);
      if (pts.length === 0) continue;
      g.push(`<polyline fill="none" stroke="${colors[mode]}" stroke-width="2" points="${pts.map((r) => `${x(r.n)},${y(r.wall!)}`).join(' ')}"/>`);
      for (const r of pts) g.push(`<circle cx="${x(r.n)}" cy="${y(r.wall!)}" r="3" fill="${colors[mode]}"><title>${MODE_LABEL[mode]}, N=${r.n}: ${f(r.wall, 2)} s</title></circle>`);
    }
    g.push('</g>');
    parts.push(g.join('\n'));
  });
  const legend = (['direct', 'proxy', 'p2p'] as Mode[])
    .map((m, i) => `<rect x="${L + i * 170}" y="${H + 4}" width="14" height="4" fill="${colors[m]}"/><text x="${L + i * 170 + 20}" y="${H + 10}" font-size="12">${MODE_LABEL[m]}</text>`)
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W * images.length}" height="${H + 20}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="#fff"/>\n${parts.join('\n')}\n${legend}\n</svg>\n`;
}

export function documentMd(m: Meta, rs: RunResult[], profiles: string[], chartFile: string): string {
  const rc = m.rateCheck;
  return [
    '# Swarm benchmark: N hosts pulling one image over rate-limited links',
    '',
    `Command: \`${m.command}\` (run as root from the repository root).`,
    '',
    `Date ${m.date}; code ${m.code}${m.nodeOptions ? `; daemons' NODE_OPTIONS ${m.nodeOptions}` : ''}; ${m.machine}.`,
    '',
    `Network: one namespace per host on a Linux bridge, 198.18.0.0/15; every host link shaped with tbf at ${m.rate} in each direction (burst 128 KiB, 20 ms FIFO). ` +
      `Rate check, payload Mbit/s: one stream ${f(rc.single)}, two senders into one host ${f(rc.downlink)}, one host sending to two ${f(rc.uplink)} ` +
      '(TCP/IP headers take ~5% of the wire, so ~95% of the rate is the ceiling for any transfer).',
    '',
    `Images: ${m.images.map((i) => `${i.name} ${f(i.bytes / 1048576)} MiB (T* = ${f((i.bytes * 8) / m.rateBps, 2)} s)`).join(', ')}. ` +
      `Client: skopeo copy docker://… ${m.dest ?? 'dir'}:… on every host (${(m.dest ?? 'dir') === 'dir' ? 'one blob at a time' : 'layers concurrently'}), all started at once; wall = last finish − start. ` +
      "Origin egress = tx bytes of the origin host's interface / image size (the registry's own log of blob bytes after the slash). " +
      'Clean state per run: fresh supernode home, dfdaemon work dirs and pull-through cache. ' +
      'The machine is shared with other sessions: "other sessions" is the CPU they used during the run; a run where they used more than 0.3 cores is repeated (up to twice) and the least disturbed attempt kept.',
    '',
    `![time against N](${chartFile})`,
    '',
    '## Results',
    '',
    resultsTable(rs),
    '',
    '## Targets (issue 5)',
    '',
    targets(rs),
    '',
    "## P2P: where the time goes (from the daemons' request traces)",
    '',
    'Seconds are from the start of the run. Piece/task times are as the peers saw them. "idle" is time between a peer\'s registration and its last piece with no piece of the big blob in flight; "link use" is the big blob\'s bytes over that span against the link rate. "rest after it" is what skopeo still spent after the big blob (into dir: it copies blobs one at a time). ELU is event-loop utilisation (1 = the JS thread never waits).',
    '',
    p2pTable(rs),
    '',
    ...profiles,
  ].join('\n');
}
