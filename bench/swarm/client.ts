// The real client on each host: skopeo copy docker://... dir:... (or oci:...), with the same isolation as
// test/fixtures/skopeo.ts (empty registries.conf, private auth file and TMPDIR), but started
// inside the host's namespace and tracked by PID so a timeout kills exactly it.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { envWithoutProxy, spawnTracked, type Tracked } from '../../test/fixtures/proc.js';
import { SKOPEO_BIN } from '../../test/fixtures/skopeo.js';
import { inNs, type Host } from './net.js';

export interface Pull {
  host: Host;
  dest: string;
  proc: Tracked;
  /** ms since the run's start when skopeo exited. */
  done: Promise<{ ms: number; ok: boolean; error?: string }>;
}

export async function startPull(host: Host, ref: string, dir: string, t0: number, proxy: string | undefined, transport: 'dir' | 'oci'): Promise<Pull> {
  const priv = join(dir, 'skopeo');
  const dest = join(dir, 'image');
  await mkdir(priv, { recursive: true });
  const regConf = join(priv, 'registries.conf');
  await writeFile(regConf, '');
  const env: NodeJS.ProcessEnv = {
    ...envWithoutProxy(),
    CONTAINERS_REGISTRIES_CONF: regConf,
    REGISTRY_AUTH_FILE: join(priv, 'auth.json'),
    TMPDIR: priv,
    ...(proxy ? { HTTP_PROXY: proxy, http_proxy: proxy } : {}),
  };
  const args = ['--insecure-policy', 'copy', '--retry-times', '0', '--src-tls-verify=false', `docker://${ref}`, `${transport}:${dest}`];
  const [cmd, a] = inNs(host.ns, SKOPEO_BIN, args);
  const proc = await spawnTracked(cmd, a, { env, logDir: dir, name: 'skopeo', stopTimeoutMs: 2_000, keepLog: true });
  const done = proc.exited.then((e) => {
    const ms = performance.now() - t0;
    if (e.code === 0) return { ms, ok: true };
    return { ms, ok: false, error: `skopeo exited ${e.code ?? e.signal}: ${proc.readLog().trim().slice(-500)}` };
  });
  return { host, dest, proc, done };
}
