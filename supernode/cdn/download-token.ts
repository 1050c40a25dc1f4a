import { TaskTokens } from '../../shared/protocol/task-token.js';
import { downloadPath } from './paths.js';

/**
 * The keys to tasks' pieces on the download port, handed out only with piece infos
 * (/peer/task), i.e. to registered peers. The secret lives as long as the process: after a
 * restart the supernode knows no task, every poll is answered 404 and the peer registers
 * again, getting paths with the new secret, so a persisted one would buy nothing and would be
 * one more secret on disk.
 */
export class DownloadTokens extends TaskTokens {
  /** The download-port path of a task's pieces, token included, as piece infos give it. */
  path(taskId: string): string {
    return downloadPath(taskId, this.token(taskId));
  }
}
