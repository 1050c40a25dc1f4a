import { join } from 'node:path';

/** Dragonfly's layout under homeDir, so an operator's tooling finds files where it expects. */
export function downloadDir(homeDir: string): string {
  return join(homeDir, 'repo', 'download');
}
export function taskDir(homeDir: string, taskId: string): string {
  return join(downloadDir(homeDir), taskId.slice(0, 3));
}
export function dataFile(homeDir: string, taskId: string): string {
  return join(taskDir(homeDir, taskId), taskId);
}
export function partFile(homeDir: string, taskId: string): string {
  return `${dataFile(homeDir, taskId)}.part`;
}
/**
 * The URL path the supernode serves a task's wrapped pieces at, on downloadPort: Dragonfly's
 * /download/<id[0:3]>/<id>, plus the token (DownloadTokens) that shows the asker registered.
 * Stock dfget and our dfdaemon fetch http://peerIp:peerPort + path, so the query comes along.
 */
export function downloadPath(taskId: string, token: string): string {
  return `/download/${taskId.slice(0, 3)}/${taskId}?token=${token}`;
}
