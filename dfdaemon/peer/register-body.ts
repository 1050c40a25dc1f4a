import { hostname } from 'node:os';
import { filterUrl } from '../../shared/protocol/taskid.js';
import { VERSION } from '../../shared/protocol/version.js';
import type { TaskFile } from '../store/task-file.js';
import { defaultPiecePaths } from '../uploader/piece-path.js';
import type { DownloaderOptions, DownloadRequest } from './download-types.js';
import type { RegisterBody, Registered } from './supernode-wire.js';

/**
 * What registering `req` with one supernode sends: `addr` is how we and that node see each
 * other, `localTaskId` the task's ID here. The path peers fetch its pieces under carries a token
 * only our uploader can check (piece-path.ts), so it cannot be worked out from the blob's URL.
 */
export function registerBody(
  req: DownloadRequest,
  o: Pick<DownloaderOptions, 'cid' | 'localIP' | 'uploadPort' | 'filter' | 'paths'>,
  addr: { local: string; remote: string },
  localTaskId: string,
): RegisterBody {
  const taskUrl = filterUrl(req.url, o.filter);
  return {
    rawUrl: req.url,
    taskUrl,
    cid: o.cid,
    ip: o.localIP || addr.local,
    port: o.uploadPort,
    path: (o.paths ?? defaultPiecePaths()).path(localTaskId),
    hostName: hostname(),
    version: VERSION,
    superNodeIp: addr.remote,
    headers: Object.entries(req.headers).map(([k, v]) => `${k}:${v}`),
    dfdaemon: true,
    relay: true,
    insecure: req.insecure ?? false,
    rootCAs: (req.ca ?? []).map((pem) => Buffer.from(pem).toString('base64')),
    ...(req.md5 ? { md5: req.md5 } : {}),
    ...(req.identifier ? { identifier: req.identifier } : {}),
  };
}

/** A registration that describes the task file's own blob, so the pieces it holds still count. */
export function fitsTask(reg: Registered, tf: TaskFile): boolean {
  return reg.taskId === tf.taskId && reg.fileLength === tf.layout.fileLength && reg.pieceSize === tf.layout.pieceSize;
}
