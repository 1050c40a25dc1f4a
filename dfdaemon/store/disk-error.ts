/**
 * Errors of the local disk that holds the task files, as opposed to errors of a peer or the
 * origin. A write that fails with one of these says nothing about where the bytes came from:
 * the source must not be blamed for it, and fetching the same bytes again, from anyone, would
 * fail the same way.
 */
const LOCAL_CODES = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS', 'EACCES', 'EPERM', 'EFBIG']);

/** The piece cache cannot be written (full, over quota, read-only, failing, no permission). */
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
}

/** `err` as a LocalStorageError when it is a local disk failure of the named kinds, else undefined. */
export function localStorageError(err: unknown, what: string): LocalStorageError | undefined {
  if (err instanceof LocalStorageError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string' || !LOCAL_CODES.has(code)) return undefined;
  return new LocalStorageError(code, `${what}: ${(err as Error).message}`, { cause: err });
}
