// dfdaemon's close() with an HTTPS registry, the usual production case: Docker's blob GETs run
// inside hijacked CONNECT tunnels, not on the proxy server itself, and must get the same grace
// period as plain ones instead of being cut when the tunnels are torn down.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { Server as HttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ProxyAgent, request } from 'undici';
import { genCa } from '../dfdaemon/cli/gen-ca.js';
import { startDfdaemon, type Dfdaemon } from '../dfdaemon/daemon.js';
import { loadDfdaemonConfig } from '../shared/config/dfdaemon.js';
import { createLogger } from '../shared/log/index.js';
import { WRAP_OVERHEAD } from '../shared/protocol/pieces.js';
import { createCa, type TestCa } from './fixtures/tls.js';
import { startFakeStock, type FakeStock } from './helpers/peer-fake-stock.js';
import { randomBlob, startOrigin, type Origin } from './helpers/origin.js';
import { hijackYaml } from './helpers/proxy-get.js';
import { originHandler, serveTls } from './helpers/tls-server.js';

const PIECE = 256 * 1024;
const HOST = '127.0.0.1';

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; !cond(); await sleep(20)) if (Date.now() > end) throw new Error('condition not met in time');
}

describe('dfdaemon close() with hijacked HTTPS', () => {
  let dir: string;
  let origin: Origin;
  let originCa: TestCa;
  let https: HttpsServer;
  let httpsPort: number;
  let fake: FakeStock;
  let dfCa: string;
  let dfConfig: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfts-close-hj-'));
    origin = await startOrigin(HOST);
    originCa = await createCa({ commonName: 'origin CA' });
    const served = await serveTls(originCa, HOST, originHandler(origin), { name: 'origin' });
    ({ server: https, port: httpsPort } = served);
    fake = await startFakeStock({ pieceSize: PIECE, pieceDelayMs: 100, downLimit: 2 });
    const ca = await genCa({ out: join(dir, 'keys'), cn: 'df CA', days: 2 });
    dfCa = await readFile(ca.certFile, 'utf8');
    const home = join(dir, 'df');
    await mkdir(home);
    dfConfig = join(home, 'dfdaemon.yml');
    await writeFile(
      dfConfig,
      [
        'port: 0',
        `workHome: ${home}`,
        `dfget_flags: ["--node", "${fake.node}"]`,
        'proxies:',
        '  - regx: blobs/sha256.*',
        ...hijackYaml(ca, [{ regx: `${HOST.replace(/\./g, '\\.')}:${httpsPort}`, certs: [served.leaf.chainFile] }]),
        '',
      ].join('\n'),
    );
  });
  after(async () => {
    await fake.close();
    https.closeAllConnections();
    await new Promise((r) => https.close(r));
    await origin.close();
    await originCa.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  const start = (drainMs: number): Promise<Dfdaemon> =>
    startDfdaemon(loadDfdaemonConfig({ file: dfConfig, defaultFile: null }), { host: HOST, log: createLogger('test', { level: 'silent' }), drainMs });

  /** A blob of ten slowly served pieces, pulled through a hijacked CONNECT as Docker would. */
  function pull(df: Dfdaemon, agent: ProxyAgent) {
    const blob = randomBlob(10 * (PIECE - WRAP_OVERHEAD) - 99);
    const digest = origin.add(blob);
    const url = `https://${HOST}:${httpsPort}/v2/library/t/blobs/sha256:${digest}`;
    fake.blobs.set(url, blob);
    const result = (async () => {
      const res = await request(url, { dispatcher: agent });
      const h = createHash('sha256');
      let bytes = 0;
      try {
        for await (const c of res.body) {
          h.update(c as Buffer);
          bytes += (c as Buffer).length;
        }
        return { status: res.statusCode, bytes, sha256: h.digest('hex'), complete: true };
      } catch {
        return { status: res.statusCode, bytes, sha256: '', complete: false };
      }
    })();
    return { blob, digest, result };
  }

  it('a hijacked blob response running at close() finishes within the grace period', async () => {
    const df = await start(5_000);
    const agent = new ProxyAgent({ uri: `http://${HOST}:${df.port}`, requestTls: { ca: dfCa } });
    try {
      const { blob, digest, result } = pull(df, agent);
      await until(() => fake.pieceSuc.length >= 1);
      const t0 = Date.now();
      await df.close();
      const r = await result;
      assert.equal(r.status, 200);
      assert.ok(r.complete, `the body was cut after ${r.bytes} of ${blob.length} bytes`);
      assert.equal(r.bytes, blob.length);
      assert.equal(r.sha256, digest);
      assert.ok(Date.now() - t0 < 5_000, 'within the grace period');
      assert.equal(origin.requests.get(digest) ?? 0, 0, 'the blob came through P2P');
    } finally {
      await agent.close();
    }
  });

  it('with no grace period the same response is cut (the test can tell)', async () => {
    const before = fake.pieceSuc.length;
    const df = await start(0);
    const agent = new ProxyAgent({ uri: `http://${HOST}:${df.port}`, requestTls: { ca: dfCa } });
    try {
      const { blob, result } = pull(df, agent);
      await until(() => fake.pieceSuc.length >= before + 1);
      await df.close();
      const r = await result;
      assert.ok(!r.complete && r.bytes < blob.length, 'cut short');
    } finally {
      await agent.destroy();
    }
  });
});
