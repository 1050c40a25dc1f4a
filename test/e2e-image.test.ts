// The container images (Dockerfile.supernode, Dockerfile.dfclient), built and run by a real
// dockerd with the user guide's settings: the compose file's memory and CPU limits, mounts and
// --download-port, the stack's limits and data volume, and the guide's own config files. A
// skopeo pull goes through the containerised dfdaemon and supernode.
// This machine cannot pull node:20-bookworm-slim, so BASE is an image made here from the
// host's own node, bash and coreutils; the Dockerfiles are otherwise built as a user builds them.
// dockerd runs without a bridge, so the containers use the host's network, each daemon on a
// loopback address of its own (hence --listen-ip, which the compose file's port mapping makes
// unnecessary there).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, cp, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDockerd, type Dockerd } from './fixtures/dockerd.js';
import { addHosts } from './fixtures/hosts.js';
import { buildImage, pushImage } from './fixtures/image.js';
import { tmpDir, waitFor, type TmpDir } from './fixtures/proc.js';
import { startRegistry, type Registry } from './fixtures/registry.js';
import { skopeoCopy, verifyCopiedDir } from './fixtures/skopeo.js';
import { metric } from './helpers/cluster.js';
import { Cleanups, e2eSkip, expectBlobGets, loopbackIp, onPath, REPO_ROOT, scrape, seedFile } from './helpers/e2e.js';

const MiB = 1024 * 1024;
/** What our bin/ launchers run (`#!/usr/bin/env bash`, readlink, dirname, node), plus ldd to find their libraries. */
const HOST_TOOLS = ['bash', 'env', 'readlink', 'dirname', 'ldd'];

/**
 * The files a base image needs to run our bin/ launchers, as [host path, image path]: the tools
 * under /usr/bin, where the launchers' shebang and PATH look, wherever this host keeps them
 * (node is the one running this test: a fresh machine's may live under /usr/local or nvm), and
 * the libraries ldd names, at their own paths.
 */
function baseFiles(): Array<[string, string]> {
  const tools: Array<[string, string]> = [[process.execPath, '/usr/bin/node']];
  for (const t of HOST_TOOLS.filter((n) => n !== 'ldd')) {
    const found = onPath(t);
    if (found === undefined) throw new Error(`${t} is not on PATH`);
    tools.push([found, `/usr/bin/${t}`]);
  }
  const libs = execFileSync('ldd', tools.map(([host]) => host), { encoding: 'utf8' })
    .split('\n')
    .map((l) => /(\/\S+) \(0x/.exec(l)?.[1])
    .filter((p): p is string => p !== undefined);
  return [...tools, ...[...new Set(libs)].map((l): [string, string] => [l, l])];
}

async function buildBase(docker: Dockerd, dir: string, tag: string): Promise<void> {
  const root = join(dir, 'rootfs');
  for (const [host, image] of baseFiles()) {
    await mkdir(join(root, dirname(image)), { recursive: true });
    await cp(host, join(root, image), { dereference: true });
  }
  await mkdir(join(root, 'etc'), { recursive: true });
  await writeFile(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/usr/bin/bash\n');
  await mkdir(join(root, 'root'), { recursive: true });
  await mkdir(join(root, 'tmp'), { recursive: true });
  await chmod(join(root, 'tmp'), 0o1777);
  await writeFile(join(dir, 'Dockerfile'), 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/bin:/usr/bin:/bin\n');
  await docker.docker(['build', '--quiet', '-t', tag, dir]);
}

/** Until the daemon in a container answers /_ping; on a timeout the error carries its logs. */
async function waitPing(url: string, logs: () => Promise<string>): Promise<void> {
  const answers = async () => (await fetch(`${url}/_ping`).catch(() => undefined))?.ok;
  await waitFor(answers, { timeoutMs: 30_000, intervalMs: 200, message: `${url}/_ping` }).catch(async (err: Error) => {
    throw new Error(`${err.message}:\n${await logs()}`);
  });
}

describe('container images: built from the Dockerfiles, run with the guide\'s compose and stack settings', { skip: e2eSkip(HOST_TOOLS), timeout: 900_000 }, () => {
  const cleanups = new Cleanups();
  const id = randomBytes(4).toString('hex');
  let t: TmpDir;
  let reg: Registry;
  let docker: Dockerd;

  /** `docker run -d` with the host's network; removed (with its volumes) in teardown. */
  async function run(name: string, args: string[]): Promise<{ logs: () => Promise<string> }> {
    const full = `dfts-${name}-${id}`;
    cleanups.push(async () => void (await docker.docker(['rm', '--force', '--volumes', full]).catch(() => '')));
    await docker.docker(['run', '--detach', '--name', full, '--network', 'host', ...args]);
    return { logs: () => docker.docker(['logs', '--tail', '50', full]).catch((e: Error) => e.message) };
  }

  /** Entry names under `dirs` inside a container of `image` (the base has no ls, but node). */
  const ls = async (image: string, dirs: string[], o: { recursive?: boolean; runArgs?: string[] } = {}) => {
    const script = `for (const d of process.argv.slice(1)) console.log(require('fs').readdirSync(d, { recursive: ${o.recursive === true} }).join('\\n'))`;
    return (await docker.docker(['run', '--rm', ...(o.runArgs ?? []), '--entrypoint', '/usr/bin/node', image, '-e', script, ...dirs])).split(/\s+/).filter(Boolean);
  };

  const inspect = async (name: string, fmt: string) => (await docker.docker(['inspect', '--format', fmt, `dfts-${name}-${id}`])).trim();

  before(async () => {
    t = await tmpDir('e2e-image');
    cleanups.push(() => t.cleanup());
    docker = await startDockerd({});
    cleanups.push(() => docker.stop());
    const base = `dfts-test-base:${id}`;
    await buildBase(docker, join(t.path, 'base'), base);
    for (const f of ['supernode', 'dfclient']) {
      await docker.docker(['build', '--quiet', '-f', join(REPO_ROOT, `Dockerfile.${f}`), '--build-arg', `BASE=${base}`, '-t', `dfts-test-${f}:${id}`, REPO_ROOT]);
    }
    const regIp = await loopbackIp();
    reg = await startRegistry({ host: regIp });
    cleanups.push(() => reg.stop());
    cleanups.push(await addHosts([{ ip: regIp, name: 'harbor.test' }]));
  });

  after(() => cleanups.run());

  it('the image holds the daemons and production modules only', async () => {
    const names = await ls(`dfts-test-supernode:${id}`, ['/app', '/app/dist', '/app/node_modules', '/app/node_modules/classic-level/prebuilds']);
    for (const want of ['bin', 'dist', 'node_modules', 'supernode', 'dfdaemon', 'shared', 'fastify', 'level', 'linux-x64', 'linux-arm64', 'linux-arm']) {
      assert.ok(names.includes(want), `${want} is in the image`);
    }
    for (const unwanted of ['test', 'bench', 'typescript', '@types']) assert.ok(!names.includes(unwanted), `${unwanted} is not in the image`);
  });

  it('supernode and dfdaemon containers serve a skopeo pull through P2P, within the guide\'s limits', async () => {
    const snIp = await loopbackIp();
    const dfIp = await loopbackIp();
    cleanups.push(await addHosts([{ ip: snIp, name: 'supernode.test' }]));
    // docker-compose.supernode.yml: mem_limit 100m, memswap_limit 200m, cpus 0.8, the data
    // folder and supernode.yml mounted, command --download-port=8001. The guide's supernode.yml
    // listens on 8002.
    const snHome = join(t.path, 'supernode-data');
    await mkdir(snHome);
    const snCfg = await seedFile('supernode.yml', t.path, {});
    const sn = await run('supernode', ['--memory', '100m', '--memory-swap', '200m', '--cpus', '0.8', '-v', `${snHome}:/home/admin/supernode`, '-v', `${snCfg}:/etc/dragonfly/supernode.yml:ro`, `dfts-test-supernode:${id}`, '--download-port=8001', '--listen-ip', snIp]);
    await waitPing(`http://${snIp}:8002`, sn.logs);
    // docker-stack.dfclient.yml: memory 200M, cpus 0.5, dfdaemon.yml as a config, a volume for
    // the piece cache, port 65001. The guide's HTTP-Harbor dfdaemon.yml, host names substituted.
    const dfCfg = await seedFile('dfdaemon-http.yml', t.path, { '<mysupernodehost>': 'supernode.test', '<myharbor_host>': 'harbor.test' });
    // Cleanups run last first: the volume goes after the container that uses it.
    cleanups.push(async () => void (await docker.docker(['volume', 'rm', '--force', `dfts-cache-${id}`]).catch(() => '')));
    const df = await run('dfclient', ['--memory', '200m', '--cpus', '0.5', '-v', `dfts-cache-${id}:/root/.small-dragonfly`, '-v', `${dfCfg}:/etc/dragonfly/dfdaemon.yml:ro`, `dfts-test-dfclient:${id}`, '--port', '65001', '--listen-ip', dfIp]);
    const dfUrl = `http://${dfIp}:65001`;
    await waitPing(dfUrl, df.logs);

    const img = await buildImage({ layers: [5 * MiB, 2 * MiB], seed: `image-${id}` });
    cleanups.push(() => img.cleanup());
    await pushImage(reg.url, 'library/app', 'containers', img);
    const dest = join(t.path, 'copy');
    await skopeoCopy(`harbor.test:${reg.port}/library/app:containers`, dest, { env: { HTTP_PROXY: dfUrl, HTTPS_PROXY: dfUrl, NO_PROXY: '' }, srcTlsVerify: false });
    assert.ok((await verifyCopiedDir(dest)).ok, 'every blob of the copy verifies');
    const text = await scrape(dfUrl);
    assert.equal(metric(text, 'dfdaemon_blobs_total', { via: 'p2p' }), 3, 'both layers and the config came through P2P');
    assert.ok(metric(text, 'dfdaemon_piece_bytes_total', { source: 'supernode' }) >= 7 * MiB, 'from the containerised supernode');
    await expectBlobGets(reg, [...img.layers, img.config], 1);
    // The CDN wrote into the mounted data folder, as the compose file means it to.
    const cdnFiles = execFileSync('find', [snHome, '-type', 'f'], { encoding: 'utf8' });
    assert.ok(cdnFiles.split('\n').length > 2, `the supernode stored its CDN files in the mounted folder:\n${cdnFiles}`);
    const cache = await ls(`dfts-test-dfclient:${id}`, ['/c'], { recursive: true, runArgs: ['-v', `dfts-cache-${id}:/c`] });
    assert.ok(cache.length >= 2, `the dfdaemon keeps its piece cache in the stack's volume:\n${cache.join('\n')}`);
    for (const name of ['supernode', 'dfclient']) {
      assert.equal(await inspect(name, '{{.State.Running}} {{.State.OOMKilled}}'), 'true false', `${name} still runs and was never OOM-killed`);
    }
    assert.equal(await inspect('supernode', '{{.HostConfig.Memory}}'), String(100 * MiB), 'the compose file\'s memory limit applies');
  });
});
