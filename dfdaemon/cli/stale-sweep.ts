import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';

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
export async function sweepStale(dir: string, prefix: string, rest: RegExp): Promise<void> {
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
