import type { Logger } from 'pino';
import { DfError, redactUrl } from '../../shared/errors.js';
import type { CdnTask } from '../cdn/cdn-task.js';
import { accessKey, redirectMeansYes } from '../cdn/guard.js';
import { probeSource } from '../cdn/source.js';
import type { Registration } from './types.js';

/** How long the origin's yes stands for one (task, URL, credentials): a retry asks nobody. */
export const ADMIT_TTL_MS = 60_000;
/** Yeses kept at once; past this the oldest is forgotten and asked again when it comes back. */
export const ADMIT_MAX = 1024;
/** A registrant waits this long at most for the origin's answer; then it is refused, retryably. */
export const PROBE_TIMEOUT_MS = 5_000;

/** Statuses that say the origin will not give this registrant the content. */
const REFUSED = new Set([401, 403, 404, 407]);

export interface GateOptions {
  now: () => number;
  log: Logger;
  /** The origin's status for a HEAD of the URL with these settings (tests count or fake it). */
  probe?: typeof probeSource;
  timeoutMs?: number;
}

/**
 * Who may join a task whose content may be private. The CDN fetched it once, with the first
 * registrant's credentials; handing its pieces to anyone who names the URL would hand a private
 * layer to anyone who knows its repository and digest. So a later registrant joins only with
 * the credentials that fetch succeeded with, or once the origin has answered its own HEAD (its
 * URL, headers and TLS settings) with a 2xx, or a 3xx for a registry blob URL (guard.ts). Only a
 * registrant of the task's own task URL may ask at all. Refusals are not remembered: the next try
 * asks the origin again, so a token that has just been granted is not held up.
 */
export class RegistrantGate {
  /** `${taskId} ${accessKey}` -> when the yes expires; Map order is the eviction order. */
  private readonly admitted = new Map<string, number>();
  /** Probes on their way, by the same key: a burst of one host's registrants asks the origin once. */
  private readonly asking = new Map<string, Promise<number>>();

  constructor(private readonly o: GateOptions) {}

  /** Resolves when `reg` may have `task`'s pieces; throws ACCESS_DENIED or ACCESS_UNVERIFIED. */
  async admit(task: CdnTask, reg: Registration): Promise<void> {
    if (!task.guarded) return;
    // The same task ID from another split of URL and identifier: a probe of the registrant's URL
    // would say nothing about this task's content.
    if (reg.taskUrl !== task.taskUrl) {
      throw new DfError('ACCESS_DENIED', `task ${task.taskId} was registered under another URL: fetch it from the origin`);
    }
    const now = this.o.now();
    const key = accessKey(reg.rawUrl, reg.headers);
    // What the CDN's own fetch just proved: the origin let these very credentials in.
    const fetchedAt = task.sourceOkAt;
    if (fetchedAt !== undefined && now - fetchedAt < ADMIT_TTL_MS && key === accessKey(task.req.url, task.req.headers)) return;
    const slot = `${task.taskId} ${key}`;
    const until = this.admitted.get(slot);
    if (until !== undefined && until > now) return;
    this.admitted.delete(slot);
    const url = redactUrl(reg.rawUrl);
    let status: number;
    try {
      let asked = this.asking.get(slot);
      if (!asked) {
        asked = (this.o.probe ?? probeSource)(reg.rawUrl, { headers: reg.headers, insecure: reg.insecure, rootCAs: reg.rootCAs, timeoutMs: this.o.timeoutMs ?? PROBE_TIMEOUT_MS });
        this.asking.set(slot, asked);
        void asked.finally(() => this.asking.delete(slot)).catch(() => undefined);
      }
      status = await asked;
    } catch (err) {
      this.o.log.warn({ taskId: task.taskId, cid: reg.cid, url, err: (err as Error).message }, 'cannot ask the origin about a registrant of a guarded task: refused');
      throw new DfError('ACCESS_UNVERIFIED', `cannot ask ${url} whether this peer may have task ${task.taskId}: ${(err as Error).message}`);
    }
    if ((status >= 200 && status < 300) || (status >= 300 && status < 400 && redirectMeansYes(reg.rawUrl))) {
      this.admitted.set(slot, this.o.now() + ADMIT_TTL_MS);
      if (this.admitted.size > ADMIT_MAX) this.admitted.delete(this.admitted.keys().next().value as string);
      return;
    }
    this.o.log.info({ taskId: task.taskId, cid: reg.cid, url, status }, 'origin refused a registrant of a guarded task');
    // A redirect that is not a yes (a login page's, say) is a no like a 401.
    if (REFUSED.has(status) || (status >= 300 && status < 400)) throw new DfError('ACCESS_DENIED', `${url} answered ${status} to this peer's own request: fetch it from the origin`, { details: { upstreamStatus: status } });
    throw new DfError('ACCESS_UNVERIFIED', `${url} answered ${status} when asked whether this peer may have task ${task.taskId}`, { details: { upstreamStatus: status } });
  }
}
