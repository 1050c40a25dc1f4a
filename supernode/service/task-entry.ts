import type { Logger } from 'pino';
import type { Cdn } from '../cdn/cdn.js';
import type { CdnTask } from '../cdn/cdn-task.js';
import type { DownloadTokens } from '../cdn/download-token.js';
import type { probeSource } from '../cdn/source.js';
import type { ReportEffect, SchedulerLimits, TaskState } from '../scheduler/index.js';
import type { PieceChecker } from './cdn-repair.js';

interface PeerAddr {
  ip: string;
  port: number;
  path: string;
  superNodeIp: string;
  /** Where the registration came from; undefined when registered in-process. */
  remote?: string;
}

export interface TaskEntry {
  id: string;
  url: string;
  cdn: CdnTask;
  sched: TaskState;
  peers: Map<string, PeerAddr>;
  waiters: Set<() => void>;
  accessedAt: number;
}

export interface TaskServiceOptions {
  cdn: Cdn;
  limits: SchedulerLimits;
  /** The address peers reach the supernode's download port at ('' = as each peer sees it). */
  advertiseIP: string;
  downloadPort: number;
  /** Signs the download-port paths handed out with piece infos; the download server checks them. */
  tokens: DownloadTokens;
  /** Asks the origin whether a registrant of a guarded task may have it (tests count or fake it). */
  probe?: typeof probeSource;
  /** How long a registrant of a guarded task waits for the origin's answer (default 5 s). */
  probeTimeoutMs?: number;
  now: () => number;
  rand?: () => number;
  log: Logger;
  /** How long registration waits for the origin to answer. */
  readyTimeoutMs?: number;
  /**
   * Tasks kept at most. A registration for one more first asks makeRoom to take an idle task out
   * of memory (as meta GC would later), and is refused (TOO_MANY_REQUESTS) when it cannot.
   */
  maxTasks?: number;
  makeRoom?: () => boolean;
  onAssign?: (taskId: string, fromCdn: boolean) => void;
  onReport?: (taskId: string, effect: ReportEffect) => void;
  /** A registered peer reported a failed piece of the task (the source is the CDN or a peer). */
  onPieceFailure?: (taskId: string, fromCdn: boolean) => void;
  /** Re-reads CDN pieces that peers fail to get (the CDN itself; tests inject fakes). */
  checker?: PieceChecker;
}
