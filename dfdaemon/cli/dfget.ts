import { createWriteStream, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { hostname, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import { DFGET_DEFAULTS, DFGET_SPECS, flagHelp, parseDfgetFlags } from '../../shared/config/dfget-flags.js';
import { DfError } from '../../shared/errors.js';
import { createLogger } from '../../shared/log/index.js';
import { blobDigestOf } from '../../shared/protocol/taskid.js';
import { answerInfoFlags } from '../../shared/protocol/version.js';
import { Downloader } from '../peer/downloader.js';
import { orderedStream } from '../peer/ordered-stream.js';
import { SupernodeClient } from '../peer/supernode-client.js';
import { PieceStore } from '../store/piece-store.js';
import { createUploader, handleUpload } from '../uploader/uploader.js';
import { locateOutput, OutputUnwritable, tempName, TEMP_PREFIX, TEMP_REST, type Output } from './output-file.js';
import { sweepStale } from './stale-sweep.js';

const USAGE = 'usage: dfget -u URL -o FILE [--node host[:port][=weight],...] [-f k1&k2] [--header "K: V"] [-m md5] [-s rate] [--notbs]';
const HELP = `${USAGE}

Downloads URL through P2P (Dragonfly 1.x's dfget flags). Exit 0 when FILE is written and verified,
2 on a bad flag, 1 when the download fails, 130 on Ctrl-C.

${flagHelp(DFGET_SPECS)}`;

/** Exit status for a run ended by a signal, as shells report it (128 + number). */
const SIGNAL_EXIT: Record<string, number> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };

/**
 * One download through P2P. While it runs it also serves its pieces to other peers, as
 * Dragonfly's dfget server does. The output gets its bytes only after verification (see
 * output-file.ts); a failure, a timeout (-e) or Ctrl-C removes the temp file and the piece cache.
 */
async function main(argv: string[], stop: AbortSignal): Promise<number> {
  const flags = parseDfgetFlags(argv);
  if (!flags.url || !flags.output) {
    process.stderr.write(`${USAGE}\n(dfget --help lists every flag)\n`);
    return 2;
  }
  let out: Output;
  try {
    out = await locateOutput(flags.output);
  } catch (err) {
    if (!(err instanceof OutputUnwritable)) throw err;
    process.stderr.write(`dfget: ${err.message}\n`);
    return 1;
  }
  // stderr: stdout carries only the result line, for scripts that capture it.
  const log = createLogger('dfget', { level: flags.verbose ? 'debug' : 'warn', destination: process.stderr });
  // Accepted for scripts written for Dragonfly, but with no effect here: say so rather than
  // let them look honoured.
  const ignored = [
    flags.pattern === 'cdn' ? '-p cdn (downloads as p2p)' : '',
    flags.totalLimit !== undefined ? '--totallimit' : '',
    flags.minRate !== undefined ? '--minrate' : '',
    flags.callSystem !== undefined ? '--callsystem' : '',
  ].filter(Boolean);
  if (ignored.length > 0) process.stderr.write(`dfget: ignored: ${ignored.join(', ')}\n`);
  // Our own timer, not AbortSignal.timeout(): AbortSignal.any() holds its sources weakly, and a
  // timeout signal nobody else references can be collected before it fires (-e then never
  // ends the download). The timer's closure keeps this controller alive.
  const deadline = new AbortController();
  const timer = flags.timeout ? setTimeout(() => deadline.abort(new Error('timeout')), flags.timeout) : undefined;
  const signal = AbortSignal.any([stop, deadline.signal]);
  // Dragonfly creates its work home.
  const home = flags.home ?? tmpdir();
  await mkdir(home, { recursive: true });
  await sweepStale(home, 'dfget-', /^-[A-Za-z0-9]{6}$/);
  if (out.tempDir) {
    await sweepStale(out.tempDir, TEMP_PREFIX, TEMP_REST);
    // Earlier releases named their temp output after it.
    await sweepStale(dirname(resolve(flags.output)), `${basename(resolve(flags.output))}.dfget-`, /^\.tmp$/);
  }
  const work = await mkdtemp(join(home, `dfget-${process.pid}-`));
  // A device or FIFO gets no sibling files: its temp copy lives in the run's own work directory.
  const tmp = join(out.tempDir ?? work, tempName());
  const store = new PieceStore(work);
  // -p source: straight from the origin, no supernode.
  const client = new SupernodeClient(flags.pattern === 'source' ? [] : flags.nodes, log);
  const uploader = createUploader({ store, log });
  const server = createServer((req, res) => void handleUpload(req, res, uploader));
  const cid = `${hostname()}-${process.pid}-${Date.now()}`;
  let dl: Downloader | undefined;
  try {
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(flags.port, flags.ip || '0.0.0.0', () => ok());
    });
    dl = new Downloader({
      store,
      client,
      cid,
      uploadPort: (server.address() as AddressInfo).port,
      localIP: flags.ip,
      filter: flags.filter,
      rate: flags.localLimit ?? DFGET_DEFAULTS.localLimit,
      notbs: flags.notbs,
      log,
    });
    const headers: Record<string, string> = {};
    for (const h of flags.headers) headers[h.name] = h.value;
    const ca = flags.cacerts.map((f) => readFileSync(f, 'utf8'));
    const { tf, done } = await untilAborted(dl.start({ url: flags.url, headers, insecure: flags.insecure, ca, md5: flags.md5, identifier: flags.identifier }), signal);
    const md5 = createHash('md5');
    const tap = new Transform({
      transform(chunk: Buffer, _e, cb) {
        md5.update(chunk);
        cb(null, chunk);
      },
    });
    const t0 = Date.now();
    await pipeline(orderedStream(tf, { expectSha256: blobDigestOf(flags.url) }), tap, createWriteStream(tmp, { flags: 'wx' }), { signal });
    const real = md5.digest('hex');
    if (flags.md5 && flags.md5 !== real) throw new Error(`md5 ${real} does not match --md5 ${flags.md5}`);
    // A FIFO waits here for its reader; a signal or -e still ends the run.
    await out.commit(tmp, signal);
    log.debug({ taskId: tf.taskId, bytes: tf.layout.fileLength, ms: Date.now() - t0, output: out.kind }, 'download done');
    // The stream can end before every piece is fetched (an empty file needs none of its bytes):
    // closing now would abort those fetches and log them as failures.
    await untilAborted(done, signal).catch(() => undefined);
    // When stdout carries the file itself, the result line must not end up in it.
    (out.kind === 'stdout' ? process.stderr : process.stdout).write(`download SUCCESS: ${flags.output} (${tf.layout.fileLength} bytes, md5 ${real})\n`);
    return 0;
  } catch (err) {
    // A failing cleanup must not hide why the download failed.
    await rm(tmp, { force: true }).catch(() => undefined);
    const why = stop.aborted ? `interrupted (${String(stop.reason)})` : deadline.signal.aborted ? `timed out after ${flags.timeout} ms (-e)` : (err as Error).message;
    process.stderr.write(`dfget: download FAILED: ${why}\n`);
    return stop.aborted ? (SIGNAL_EXIT[String(stop.reason)] ?? 1) : 1;
  } finally {
    clearTimeout(timer);
    server.closeAllConnections();
    server.close();
    await dl?.close();
    await client.leave(store.all(), cid);
    await client.close();
    await store.close();
    await rm(work, { recursive: true, force: true });
  }
}

/** Registration can wait on a slow origin; a signal or -e must not wait for it. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  return Promise.race([p, new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }))]);
}

const argv = process.argv.slice(2);
if (!answerInfoFlags('dfget', argv, HELP)) {
  // The first SIGINT/SIGTERM/SIGHUP (a closed terminal) stops the download and cleans up; a
  // second one ends at once.
  // A reader that went away (`dfget ... | head`) must not turn a verified download into a crash
  // that skips the cleanup: the file is there, so the run still succeeds.
  for (const s of [process.stdout, process.stderr]) s.on('error', () => undefined);
  const stop = new AbortController();
  for (const sig of ['SIGHUP', 'SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (stop.signal.aborted) process.exit(SIGNAL_EXIT[sig]);
      stop.abort(sig);
    });
  }

  main(argv, stop.signal).then(
    (code) => process.exit(code),
    (err: Error & { code?: string }) => {
      // Start-up failures (a busy --port, a missing --home) are one line, not a stack trace.
      process.stderr.write(`dfget: ${err instanceof DfError ? `${err.code}: ${err.message}` : err.message}\n`);
      process.exit(2);
    },
  );
}
