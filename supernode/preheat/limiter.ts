/** A counting semaphore whose waiters can give up: a job that times out leaves the queue at once. */
export class Limiter {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly max: number) {}

  get usage(): { running: number; waiting: number } {
    return { running: this.active, waiting: this.waiting.length };
  }

  async run<T>(fn: () => Promise<T>, signal: AbortSignal): Promise<T> {
    await this.acquire(signal);
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  private acquire(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    if (this.active < this.max) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const grant = (): void => {
        signal.removeEventListener('abort', onAbort);
        this.active++;
        resolve();
      };
      const onAbort = (): void => {
        const i = this.waiting.indexOf(grant);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(grant);
    });
  }

  private release(): void {
    this.active--;
    this.waiting.shift()?.();
  }
}

/**
 * One Limiter per registry origin: a registry that never answers then holds only its own
 * preheats' slots (each up to the registry client's timeouts), and every other registry's jobs
 * go on. The CDN's maxSourceFetches still bounds source connections overall.
 */
export class HostLimiters {
  private readonly byOrigin = new Map<string, Limiter>();

  constructor(readonly max: number) {}

  /** The limiter of `origin` (originOf a URL). */
  for(origin: string): Limiter {
    let l = this.byOrigin.get(origin);
    if (l === undefined) {
      // Idle limiters hold no state worth keeping; forgetting them bounds the map by busy origins.
      for (const [k, v] of this.byOrigin) if (v.usage.running === 0 && v.usage.waiting === 0) this.byOrigin.delete(k);
      l = new Limiter(this.max);
      this.byOrigin.set(origin, l);
    }
    return l;
  }
}

export function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
}
