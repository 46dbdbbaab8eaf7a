/**
 * What the store does when SQLite cannot serve a call: another process holds a lock (an open
 * `sqlite3` shell, a backup, a second server on the same file) or the disk is full. node:sqlite
 * blocks the event loop while SQLite waits, so SQLite itself waits only `busyTimeoutMs`; the
 * waiting is done here, between attempts, without blocking. A call still refused after
 * `busyWaitMs` fails with an Unavailable error (503) that names the cause, never an Internal 500.
 */
import { CodeboxError } from '@codebox/core'

/** The longest one SQLite statement may block the event loop waiting for a lock. */
export const busyTimeoutMs = 10
/** How long a store call keeps retrying (asynchronously) while the database is locked. Default 2 s. */
export const defaultBusyWaitMs = 2000

/** SQLITE_BUSY and SQLITE_LOCKED, by their primary result code (node:sqlite gives the extended one). */
export const isBusy = (e: unknown): boolean => [5, 6].includes(primaryCode(e))

const primaryCode = (e: unknown): number => {
  const code = (e as { errcode?: unknown } | null)?.errcode
  return typeof code === 'number' ? code & 0xff : -1
}

/** The store's failure as the API reports it, or undefined when `e` is not one SQLite reports for a locked or full store. */
export function storeUnavailable(e: unknown, file: string, waitedMs: number): CodeboxError | undefined {
  const code = primaryCode(e)
  if (code === 5 || code === 6) {
    return new CodeboxError(
      'Unavailable',
      `the store is busy: another process holds a lock on ${file} (waited ${waitedMs} ms); try again shortly; if it persists, end whatever holds the database (docs/server.md)`,
      { details: { reason: 'StoreBusy', retryAfterSeconds: 1 }, cause: e },
    )
  }
  // SQLITE_FULL, and SQLITE_IOERR (a write the file system refused, ENOSPC among them).
  if (code === 13 || code === 10) {
    return new CodeboxError(
      'Unavailable',
      `the store cannot write to ${file}: ${code === 13 ? 'the disk is full' : 'the file system refused the write (is the disk full?)'}; nothing was changed; free space in the state directory`,
      { details: { reason: code === 13 ? 'StoreDiskFull' : 'StoreWriteFailed', retryAfterSeconds: 5 }, cause: e },
    )
  }
  return undefined
}

/** Whether `e` is the store's own refusal (locked or full), as `storeUnavailable` made it. */
export const isStoreFailure = (e: unknown): e is CodeboxError =>
  e instanceof CodeboxError && e.code === 'Unavailable' && typeof e.details.reason === 'string' && e.details.reason.startsWith('Store')

/**
 * Runs an advisory write (a key's last-used time) that must not fail the call it is part of:
 * skipped when the database is locked or the disk is full.
 */
export function advisoryWrite(write: () => void): void {
  try {
    write()
  } catch (e) {
    if (storeUnavailable(e, '', 0) === undefined) throw e
  }
}

/**
 * `repo` with every method guarded: a promise-returning method refused because the database is
 * locked is called again after a short, growing pause until `waitMs` have passed; a locked or full
 * store then surfaces as `storeUnavailable`. Each repository method is one statement or one
 * transaction (rolled back on failure), so calling it again is safe.
 */
export function guardRepository<T extends object>(repo: T, options: { file: string; waitMs: number }): T {
  return new Proxy(repo, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target)
      if (typeof value !== 'function') return value
      return (...args: unknown[]): unknown => {
        const call = (): unknown => (value as (...a: unknown[]) => unknown).apply(target, args)
        let result: unknown
        try {
          result = call()
        } catch (e) {
          // A synchronous method cannot wait without blocking: it fails at once.
          throw storeUnavailable(e, options.file, 0) ?? e
        }
        return result instanceof Promise ? result.catch((e: unknown) => retry(call as () => Promise<unknown>, e, options)) : result
      }
    },
  })
}

async function retry(call: () => Promise<unknown>, first: unknown, options: { file: string; waitMs: number }): Promise<unknown> {
  const started = Date.now()
  let error = first
  let pauseMs = 20
  while (isBusy(error) && Date.now() - started + pauseMs <= options.waitMs) {
    await new Promise((resolve) => setTimeout(resolve, pauseMs))
    pauseMs = Math.min(pauseMs * 2, 250)
    try {
      return await call()
    } catch (e) {
      error = e
    }
  }
  throw storeUnavailable(error, options.file, Date.now() - started) ?? error
}
