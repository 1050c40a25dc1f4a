// A memory cgroup for the supernode, as the guide's compose file gives it (mem_limit: 100m).
// Docker charges a container the page cache of its own image's files, so the supernode runs a
// private copy of the node binary: its text pages are then charged to this cgroup as they would
// be in a container, instead of to whoever first read the host's binary. Needs root and a
// cgroup v1 memory controller or cgroup v2 with the memory controller enabled.
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function createMemCgroup(name, limitMB, dir) {
  const v1 = '/sys/fs/cgroup/memory';
  const v2 = ['/sys/fs/cgroup/unified', '/sys/fs/cgroup'].find((p) => existsSync(join(p, 'cgroup.controllers')) && readFileSync(join(p, 'cgroup.subtree_control'), 'utf8').includes('memory'));
  const isV1 = existsSync(join(v1, 'memory.limit_in_bytes'));
  if (!isV1 && !v2) throw new Error('no memory cgroup controller: run without SN_MEM_LIMIT_MB');
  const path = join(isV1 ? v1 : v2, name);
  mkdirSync(path, { recursive: true });
  writeFileSync(join(path, isV1 ? 'memory.limit_in_bytes' : 'memory.max'), String(limitMB * 1024 * 1024));
  const node = join(dir, 'node-copy');
  mkdirSync(dir, { recursive: true });
  copyFileSync(process.execPath, node);
  chmodSync(node, 0o755);
  const read = (f) => { try { return readFileSync(join(path, f), 'utf8'); } catch { return ''; } };
  return {
    /** argv for spawn: a shell that joins the cgroup, then becomes the supernode. */
    command: (args) => ['sh', ['-c', `echo $$ > ${join(path, 'cgroup.procs')} && exec "$@"`, 'sh', node, ...args]],
    report() {
      const num = (re, s) => Number(re.exec(s)?.[1] ?? NaN);
      return isV1
        ? { limitMB, peakMB: +(Number(read('memory.max_usage_in_bytes')) / 1048576).toFixed(1), limitHits: Number(read('memory.failcnt')), oomKills: num(/oom_kill (\d+)/, read('memory.oom_control')) }
        : { limitMB, peakMB: +(Number(read('memory.peak') || NaN) / 1048576).toFixed(1), limitHits: num(/\bmax (\d+)/, read('memory.events')), oomKills: num(/oom_kill (\d+)/, read('memory.events')) };
    },
    remove() {
      try { rmdirSync(path); } catch {}
      rmSync(node, { force: true });
    },
  };
}
