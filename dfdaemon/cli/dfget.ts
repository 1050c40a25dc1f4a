import { createWriteStream, readFileSync } from 'node:fs';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import { parseDfgetFlags, DFGET_DEFAULTS } from '../../shared/config/dfget-flags.js';
import { DfError } from '../../shared/errors.js';
import { createLogger } from '../../shared/log/index.js';
import { blobDigestOf } from '../../shared/protocol/taskid.js';
import { Downloader } from '../peer/downloader.js';
import { orderedStream } from '../peer/ordered-stream.js';
import { SupernodeClient } from '../peer/supernode-client.js';
import { PieceStore } from '../store/piece-store.js';
import { createUploader, handleUpload } from '../uploader/uploader.js';

const USAGE = 'usage: dfget -u URL -o FILE [--node host[:port][=weight],...] [-f k1&k2] [--header "K: V"] [-m md5] [-s rate] [--notbs]';

/**
 * One download through P2P. While it runs it also serves its pieces to other peers, as
 * Dragonfly's dfget server does. The output appears only after verification (temp + rename).
 */
async function main(argv: string[]): Promise<number> {
  const flags = parseDfgetFlags(argv);
  if (!flags.url || !flags.output) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const log = createLogger('dfget', { level: flags.verbose ? 'debug' : 'warn' });
  const work = await mkdtemp(join(flags.home ?? tmpdir(), 'dfget-'));
  const store = new PieceStore(work);
  const client = new SupernodeClient(flags.nodes, log);
  const uploader = createUploader({ store, log });
  const server = createServer((req, res) => void handleUpload(req, res, uploader));
  await new Promise<void>((r) => server.listen(flags.port, flags.ip || '0.0.0.0', () => r()));
  const cid = `${hostname()}-${process.pid}-${Date.now()}`;
  const dl = new Downloader({
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
  const tmp = `${flags.output}.dfget-${process.pid}.tmp`;
  try {
    const ca = flags.cacerts.map((f) => readFileSync(f, 'utf8'));
    const { tf } = await dl.start({ url: flags.url, headers, insecure: flags.insecure, ca });
    const md5 = createHash('md5');
    const tap = new Transform({
      transform(chunk: Buffer, _e, cb) {
        md5.update(chunk);
        cb(null, chunk);
      },
    });
    await pipeline(orderedStream(tf, { expectSha256: blobDigestOf(flags.url) }), tap, createWriteStream(tmp));
    const real = md5.digest('hex');
    if (flags.md5 && flags.md5 !== real) throw new Error(`md5 ${real} does not match --md5 ${flags.md5}`);
    await rename(tmp, flags.output);
    process.stdout.write(`download SUCCESS: ${flags.output} (${tf.layout.fileLength} bytes, md5 ${real})\n`);
    return 0;
  } catch (err) {
    await rm(tmp, { force: true });
    process.stderr.write(`dfget: download FAILED: ${(err as Error).message}\n`);
    return 1;
  } finally {
    server.closeAllConnections();
    server.close();
    await dl.close();
    await client.leave(store.all(), cid);
    await client.close();
    await store.close();
    await rm(work, { recursive: true, force: true });
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`dfget: ${err instanceof DfError ? err.message : err.stack}\n`);
    process.exit(2);
  },
);
