/**
 * Errors of the local disk that holds the task files, as opposed to errors of a peer or the
 * origin. A write that fails with one of these says nothing about where the bytes came from:
 * the source must not be blamed for it, and fetching the same bytes again, from anyone, would
 * fail the same way.
 */
const LOCAL_CODES = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS', 'EACCES', 'EPERM', 'EFBIG', 'EMFILE', 'ENFILE']);

/** This process (EMFILE) or the whole system (ENFILE) has no file descriptor left. */
const FD_CODES = new Set(['EMFILE', 'ENFILE']);

/** The piece cache cannot be written (full, over quota, read-only, failing, no permission, no descriptor left). */
export class LocalStorageError extends Error {
  /** A stable code for callers that only test `code` (the proxy passes such a request through). */
  readonly code = 'LOCAL_STORAGE';

  constructor(
    /** The system error code (ENOSPC, EDQUOT, ...). */
    readonly errno: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /**
   * Out of descriptors rather than a disk fault: the disk is fine and the shortage passes as
   * soon as sockets and files close, so it is no reason to refuse downloads for a while.
   */
  get outOfFds(): boolean {
    return FD_CODES.has(this.errno);
  }
}

/** `err` as a LocalStorageError when it is a local disk failure of the named kinds, else undefined. */
export function localStorageError(err: unknown, what: string): LocalStorageError | undefined {
  if (err instanceof LocalStorageError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string' || !LOCAL_CODES.has(code)) return undefined;
  return new LocalStorageError(code, `${what}: ${(err as Error).message}`, { cause: err });
}

/**
 * `err` as a LocalStorageError when it, or an error it was caused by (a failed fetch wraps its
 * socket's error), says the process or system ran out of descriptors; else undefined.
 */
export function outOfFdsError(err: unknown, what: string): LocalStorageError | undefined {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof LocalStorageError) return e.outOfFds ? e : undefined;
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && FD_CODES.has(code)) return new LocalStorageError(code, `${what}: ${(e as Error).message}`, { cause: err });
  }
  return undefined;
}

export function isOutOfFds(err: unknown): boolean {
  return outOfFdsError(err, '') !== undefined;
}
