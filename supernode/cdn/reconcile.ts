import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { downloadDir } from './paths.js';

/**
 * Names the CDN layout gives a task's files under download/<id[0:3]>/: the data file, its .part
 * while it is written, and the .meta/.md5 a Go supernode keeps beside its data file.
 */
const TASK_FILE = /^([0-9a-f]{64})(\.part|\.meta|\.md5)?$/;

export interface Reconciled {
  /** Task IDs whose data or .part file is still on disk. */
  withData: Set<string>;
  removed: string[];
}

/**
 * Remove the task files nothing will ever serve, resume or GC: disk GC only knows tasks with
 * metadata, and a download killed before its length was known (or before the first metadata
 * write), or a Go supernode's cache in the same homeDir, has none. Only regular files named by
 * the layout are touched; anything else under homeDir is not ours to judge.
 */
export async function reconcileDownloads(homeDir: string, known: (taskId: string) => boolean): Promise<Reconciled> {
  const root = downloadDir(homeDir);
  const withData = new Set<string>();
  const removed: string[] = [];
  const dirs = await readdir(root, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  for (const dir of dirs) {
    if (!dir.isDirectory() || !/^[0-9a-f]{3}$/.test(dir.name)) continue;
    for (const f of await readdir(join(root, dir.name), { withFileTypes: true })) {
      const m = TASK_FILE.exec(f.name);
      if (!f.isFile() || !m || !m[1].startsWith(dir.name)) continue;
      const [, id, ext] = m;
      if (known(id)) {
        if (ext === undefined || ext === '.part') withData.add(id);
        continue;
      }
      const path = join(root, dir.name, f.name);
      await rm(path, { force: true });
      removed.push(path);
    }
  }
  return { withData, removed };
}
