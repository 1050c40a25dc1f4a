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
/** The URL path the supernode serves a task's wrapped pieces at, on downloadPort. */
export function downloadPath(taskId: string): string {
  return `/download/${taskId.slice(0, 3)}/${taskId}`;
}
