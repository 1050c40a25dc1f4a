import { createWriteStream, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { hostname, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import { DFGET_DEFAULTS, DFGET_SPECS, flagHelp, parseDfgetFlags } from '../../shared/config/dfget-flags.js';
import { badRequest, DfError } from '../../shared/errors.js';
import { createLogger } from '../../shared/log/index.js';
import { blobDigestOf } from '../../shared/protocol/taskid.js';
import { answerInfoFlags } from '../../shared/protocol/version.js';
import { Downloader } from '../peer/downloader.js';
import { orderedStream } from '../peer/ordered-stream.js';
import { SupernodeClient } from '../peer/supernode-client.js';
import { PieceStore } from '../store/piece-store.js';
import { createUploader, handleUpload } from '../uploader/uploader.js';

const USAGE = 'usage: dfget -u URL -o FILE [--node host[:port][=weight],...] [-f k1&k2] [--header "K: V"] [-m md5] [-s rate] [--notbs]';
const HELP = `${USAGE}

Downloads URL through P2P (Dragonfly 1.x's dfget flags). Exit 0 when FILE is written and verified,
2 on a bad flag, 1 when the download fails, 130 on Ctrl-C.

${flagHelp(DFGET_SPECS)}`;

/** Exit status for a run ended by a signal, as shells report it (128 + number). */
const SIGNAL_EXIT: Record<string, number> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };

/**
 * A SIGKILL, a crash or a power cut leaves a run's piece cache and temp output behind. A later
 * run removes those whose process is gone and that nothing has touched for this long: --home may
 * be shared with dfgets in other PID namespaces (containers), whose PIDs mean nothing here.
 */
const STALE_MS = 60 * 60 * 1000;

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Remove `dir`'s entries named `<prefix><pid><rest>` left by processes that are gone. */
async function sweepStale(dir: string, prefix: string, rest: RegExp): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const m = /^(\d+)(.*)$/.exec(name.slice(prefix.length));
    if (!m || !rest.test(m[2]) || Number(m[1]) === process.pid || !processGone(Number(m[1]))) continue;
    const path = join(dir, name);
    const st = await stat(path).catch(() => undefined);
    if (!st || Date.now() - st.mtimeMs < STALE_MS) continue;
    // A piece cache's own mtime moves only when entries come or go; its files show the writes.
    const inner = st.isDirectory() ? await readdir(path).catch(() => [] as string[]) : [];
    const times = await Promise.all(inner.map((f) => stat(join(path, f)).then((s) => s.mtimeMs, () => 0)));
    if (times.some((t) => Date.now() - t < STALE_MS)) continue;
    await rm(path, { recursive: true, force: true });
  }
}

/**
 * One download through P2P. While it runs it also serves its pieces to other peers, as
 * Dragonfly's dfget server does. The output appears only after verification (temp + rename);
 * a failure, a timeout (-e) or Ctrl-C removes the temp file and the piece cache.
 */
async function main(argv: string[], stop: AbortSignal): Promise<number> {
  const flags = parseDfgetFlags(argv);
  if (!flags.url || !flags.output) {
    process.stderr.write(`${USAGE}\n(dfget --help lists every flag)\n`);
    return 2;
  }
  const output = resolve(flags.output);
  if ((await stat(output).catch(() => undefined))?.isDirectory()) throw badRequest(`--output ${flags.output} is a directory; name the file to write`);
  // Dragonfly creates the output's directory.
  await mkdir(dirname(output), { recursive: true });
  const log = createLogger('dfget', { level: flags.verbose ? 'debug' : 'warn' });
  // Accepted for scripts written for Dragonfly, but with no effect here: say so rather than
  // let them look honoured.
  const ignored = [
    flags.pattern === 'cdn' ? '-p cdn (downloads as p2p)' : '',
    flags.totalLimit !== undefined ? '--totallimit' : '',
    flags.minRate !== undefined ? '--minrate' : '',
    flags.callSystem !== undefined ? '--callsystem' : '',
  ].filter(Boolean);
  if (ignored.length > 0) process.stderr.write(`dfget: ignored: ${ignored.join(', ')}\n`);
  const tmp = `${output}.dfget-${process.pid}.tmp`;
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
  await sweepStale(dirname(output), `${basename(output)}.dfget-`, /^\.tmp$/);
  const work = await mkdtemp(join(home, `dfget-${process.pid}-`));
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
    await pipeline(orderedStream(tf, { expectSha256: blobDigestOf(flags.url) }), tap, createWriteStream(tmp), { signal });
    const real = md5.digest('hex');
    if (flags.md5 && flags.md5 !== real) throw new Error(`md5 ${real} does not match --md5 ${flags.md5}`);
    await rename(tmp, output);
    // The stream can end before every piece is fetched (an empty file needs none of its bytes):
    // closing now would abort those fetches and log them as failures.
    await untilAborted(done, signal).catch(() => undefined);
    process.stdout.write(`download SUCCESS: ${flags.output} (${tf.layout.fileLength} bytes, md5 ${real})\n`);
    return 0;
  } catch (err) {
    await rm(tmp, { force: true });
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
