// Two supernodes in dfget_flags, the one a blob ranks first killed (SIGKILL) between two docker
// pulls: the second pull still goes through P2P, by the other supernode, and nothing falls back
// to the registry from dfdaemon.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { nodeOrder } from '../dfdaemon/peer/node-order.js';
import { parseNodeList } from '../shared/config/dfget-flags.js';
import { filterUrl, taskId } from '../shared/protocol/taskid.js';
import { startDockerd } from './fixtures/dockerd.js';
import { addHosts } from './fixtures/hosts.js';
import { buildImage, pushImage, type BuiltImage } from './fixtures/image.js';
import { tmpDir, waitFor, type TmpDir } from './fixtures/proc.js';
import { startRegistry, type Registry } from './fixtures/registry.js';
import { dfdaemonAt, metric } from './helpers/cluster.js';
import { randomBlob, startOrigin } from './helpers/origin.js';
import { getViaProxy } from './helpers/proxy-get.js';
import { Cleanups, e2eSkip, expectBlobGets, loopbackIp, scrape, startBinOnFreePort, type Daemon } from './helpers/e2e.js';

const MiB = 1024 * 1024;

/** A ./bin/supernode on its own loopback address, with its home under `dir`. */
async function startSupernode(dir: string, name: string, cleanups: Cleanups): Promise<Daemon> {
  const ip = await loopbackIp();
  const cfg = join(dir, `${name}.yml`);
  await writeFile(cfg, `base:\n  homeDir: ${join(dir, `${name}-home`)}\n`);
  const sn = await startBinOnFreePort('supernode', ip, (port) => ['--config', cfg, '--port', String(port), '--download-port=0', '--listen-ip', ip]);
  cleanups.push(() => sn.stop());
  return sn;
}

describe('end to end: supernode failover', { skip: e2eSkip(), timeout: 600_000 }, () => {
  const cleanups = new Cleanups();
  const tag = randomBytes(3).toString('hex');
  const regName = `failover-${tag}.test`;
  let t: TmpDir;
  let reg: Registry;
  let sns: Daemon[];
  let df: Daemon;
  let nodes: string;

  const blobsOf = (img: BuiltImage) => [...img.layers.map((l) => ({ digest: l.digest, size: l.size })), { digest: img.config.digest, size: img.config.size }];
  /** The supernode each blob of `img` tries first, as dfdaemon ranks them. */
  const firstNodes = (img: BuiltImage) =>
    blobsOf(img).map((b) => nodeOrder(parseNodeList(nodes, 'n'), taskId(filterUrl(`${reg.url}/v2/library/app/blobs/${b.digest}`, ['Expires', 'Signature'])))[0]);

  before(async () => {
    t = await tmpDir('e2e-failover');
    cleanups.push(() => t.cleanup());
    const regIp = await loopbackIp();
    reg = await startRegistry({ host: regIp, hostname: regName });
    cleanups.push(() => reg.stop());
    cleanups.push(await addHosts([{ ip: regIp, name: regName }]));
    sns = [await startSupernode(t.path, 'sn0', cleanups), await startSupernode(t.path, 'sn1', cleanups)];
    nodes = sns.map((s) => `${s.host}:${s.port}=1`).join(',');
    const ip = await loopbackIp();
    const cfg = join(t.path, 'dfdaemon.yml');
    await writeFile(cfg, `dfget_flags: ["--node", "${nodes}", "-f", "Expires&Signature"]\nproxies:\n  - regx: blobs/sha256.*\nratelimit: 200M\n`);
    df = await startBinOnFreePort('dfdaemon', ip, (port) => ['--config', cfg, '--port', String(port), '--listen-ip', ip], { HOME: t.path });
    cleanups.push(() => df.stop());
  });

  after(() => cleanups.run());

  it('with the first supernode killed, pulls go on through the second', async () => {
    const docker = await startDockerd({ env: { HTTP_PROXY: df.url, HTTPS_PROXY: df.url, NO_PROXY: '' }, insecureRegistries: [reg.hostPort] });
    cleanups.push(() => docker.stop());
    const first = await buildImage({ layers: [2 * MiB, 1 * MiB], seed: `${tag}-first` });
    cleanups.push(() => first.cleanup());
    await pushImage(reg.url, 'library/app', 'first', first);
    await docker.pull(`${reg.hostPort}/library/app:first`);
    assert.equal(await docker.imageId(`${reg.hostPort}/library/app:first`), first.config.digest);

    // An image with at least one blob that ranks the doomed supernode first.
    const doomed = `${sns[0].host}:${sns[0].port}`;
    let second: BuiltImage;
    for (let i = 0; ; i++) {
      const candidate = await buildImage({ layers: [2 * MiB, 1 * MiB], seed: `${tag}-second-${i}` });
      // Each candidate's own cleanup: a closure over `second` would remove only the last one.
      cleanups.push(() => candidate.cleanup());
      second = candidate;
      if (firstNodes(second).includes(doomed)) break;
    }
    await pushImage(reg.url, 'library/app', 'second', second);
    process.kill(sns[0].proc.pid, 'SIGKILL');
    await sns[0].proc.exited;

    await docker.pull(`${reg.hostPort}/library/app:second`);
    assert.equal(await docker.imageId(`${reg.hostPort}/library/app:second`), second.config.digest);
    const text = await scrape(df.url);
    assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'p2p' }), 6, 'all six blobs of both images through P2P');
    assert.equal(metric(text, 'dfdaemon_source_bytes_total'), 0, 'dfdaemon never went to the registry itself');
    await expectBlobGets(reg, blobsOf(second), 1);
    const survivor = await scrape(sns[1].url);
    assert.ok(metric(survivor, 'supernode_registrations_total', { result: 'ok' }) >= 3, 'the second supernode registered every blob of the second image');
    await docker.stop();
  });
});

// The same, mid-download: the supernode is SIGKILLed while dfdaemon holds some of the blob's
// pieces. dfdaemon registers with the other one, keeps what it has, and finishes there.
describe('supernode lost mid-download', { skip: e2eSkip(), timeout: 120_000 }, () => {
  const cleanups = new Cleanups();
  after(() => cleanups.run());

  it('carries on with the next supernode, keeping its pieces, and never goes to the origin itself', async () => {
    const t = await tmpDir('failover-mid');
    cleanups.push(() => t.cleanup());
    const origin = await startOrigin(await loopbackIp());
    cleanups.push(() => origin.close());
    origin.rate = 2 * MiB;
    const sns = [await startSupernode(t.path, 'mid-sn0', cleanups), await startSupernode(t.path, 'mid-sn1', cleanups)];
    const nodes = sns.map((s) => `${s.host}:${s.port}=1`);
    const doomed = `${sns[0].host}:${sns[0].port}`;
    // A blob that ranks the doomed supernode first.
    let digest = '';
    do digest = origin.add(randomBlob(8 * MiB));
    while (nodeOrder(parseNodeList(nodes.join(','), 'n'), taskId(filterUrl(origin.blobUrl(digest), ['Expires', 'Signature'])))[0] !== doomed);
    const dfIp = await loopbackIp();
    const df = await dfdaemonAt(t.path, dfIp, nodes, 'ratelimit: 1G\n');
    cleanups.push(() => df.close());

    const got = getViaProxy(dfIp, df.port, origin.blobUrl(digest));
    const held = await waitFor(() => {
      const tf = [...df.store.all()][0];
      return tf && tf.completedPieces >= 4 ? tf.completedPieces : undefined;
    }, { timeoutMs: 20_000, message: 'some pieces through the first supernode' });
    process.kill(sns[0].proc.pid, 'SIGKILL');
    await sns[0].proc.exited;
    const r = await got;
    assert.equal(r.sha256, digest, 'the blob is whole and correct');
    assert.ok(held < [...df.store.all()][0].layout.count, 'the kill came mid-download');
    const text = await (await fetch(`http://${dfIp}:${df.port}/metrics`)).text();
    assert.equal(metric(text, 'dfdaemon_source_bytes_total'), 0, 'dfdaemon never went to the origin itself');
    assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'p2p' }), 1);
    const survivor = await scrape(sns[1].url);
    assert.equal(metric(survivor, 'supernode_registrations_total', { result: 'ok' }), 1, 'the second supernode took the task');
    assert.equal(origin.requests.get(digest), 2, 'one fetch by each supernode\'s CDN');
  });
});
