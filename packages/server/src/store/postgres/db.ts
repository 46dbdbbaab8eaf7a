/**
 * The PostgreSQL connection pool of the store and what its repositories share: queries,
 * transactions on one pooled connection, unique-violation checks, and the store's failures as the
 * API reports them (a lock held too long, the server unreachable, its disk full: a 503 naming the
 * cause, never an Internal 500). The `pg` client is pure JavaScript (no libpq).
 */
import pg from 'pg'
import { CodeboxError } from '@codebox/core'

/** A connection, pooled or one transaction's: what repository code runs its SQL on. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>
}

/** int8 (count(*), identity ids, byte counts) as a JavaScript number: every such value of the store stays below 2^53. */
const int8 = 20
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === int8 && format !== 'binary' ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig['getTypeParser'],
}

export interface DbOptions {
  /** How long a statement waits for another connection's lock, and how long a call keeps retrying while the server cannot be reached. */
  busyWaitMs: number
  /** Connections to the server at most. Default 10. */
  maxConnections?: number
}

/**
 * `uri` with any password replaced by `***` (in the user info and a `password` parameter): what
 * error messages and logs may show.
 */
export function redactUri(uri: string): string {
  return uri.replace(/^([a-z]+:\/\/[^:@/?#]*:)[^@]*@/i, '$1***@').replace(/([?&]password=)[^&#]*/gi, '$1***')
}

/**
 * PostgreSQL text cannot hold the NUL character, which SQLite's can: in a string parameter (what
 * callers and sandboxes send: names, prompts, log text) each one becomes U+FFFD, so such input is
 * stored rather than failing the call. JSON columns are unaffected (JSON escapes NUL as \u0000).
 */
export const withoutNul = (s: string): string => (s.includes('\u0000') ? s.replaceAll('\u0000', '\uFFFD') : s)

const clean = (values: unknown[]): unknown[] => values.map((v) => (typeof v === 'string' ? withoutNul(v) : v))

/** The pool of one store: `query` on any connection, `tx` on one connection in a transaction. */
export class Db implements Queryable {
  readonly pool: pg.Pool
  /** The URI without its password, for messages. */
  readonly where: string
  readonly busyWaitMs: number
  #closed: Promise<void> | undefined

  constructor(uri: string, options: DbOptions) {
    this.where = redactUri(uri)
    this.busyWaitMs = options.busyWaitMs
    this.pool = new pg.Pool({
      connectionString: uri,
      max: options.maxConnections ?? 10,
      types,
      application_name: 'codebox',
      connectionTimeoutMillis: Math.max(1000, options.busyWaitMs),
      idleTimeoutMillis: 30_000,
      lock_timeout: options.busyWaitMs,
      // A transaction left open by a stalled caller must not hold its locks for ever.
      idle_in_transaction_session_timeout: 60_000,
    })
    // An idle connection the server closed (a restart, a failover) is only dropped: the next call connects again.
    this.pool.on('error', () => {})
  }

  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    return this.pool.query<R>(text, values && clean(values))
  }

  /**
   * Runs `fn` in one transaction on one connection, committing when it returns and rolling back
   * when it throws. READ COMMITTED: what must not interleave with another replica takes a row lock
   * (`SELECT ... FOR UPDATE`), an advisory lock, or relies on a unique constraint.
   */
  async tx<T>(fn: (c: Queryable) => Promise<T>): Promise<T> {
    const client = await this.pool.connect()
    let broken = false
    try {
      await client.query('BEGIN')
      const result = await fn({ query: (text, values) => client.query(text, values && clean(values)) })
      await client.query('COMMIT')
      return result
    } catch (e) {
      try {
        await client.query('ROLLBACK')
      } catch {
        broken = true
      }
      throw e
    } finally {
      client.release(broken)
    }
  }

  /** Closes every connection; closing twice is harmless. */
  close(): Promise<void> {
    return (this.#closed ??= this.pool.end())
  }

  get closed(): boolean {
    return this.#closed !== undefined
  }
}

const sqlState = (e: unknown): string => {
  const code = (e as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : ''
}

/** Whether `e` is PostgreSQL's unique violation, of constraint `name` when given. */
export function isUniqueViolation(e: unknown, name?: string): boolean {
  return sqlState(e) === '23505' && (name === undefined || (e as { constraint?: unknown }).constraint === name)
}

/** Node's errors of a connection that could not be made or was lost. */
const connectionCodes = new Set(['ECONNREFUSED', 'ENOENT', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND'])

/** The pg client's own messages for a connection it could not make or lost. */
const connectionMessages = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection is closed)/

/** A connection that could not be made, was refused or was lost. */
function isConnectionFailure(e: unknown): boolean {
  const state = sqlState(e)
  if (connectionCodes.has(state) || state.startsWith('08') || ['57P01', '57P02', '57P03', '53300'].includes(state)) return true
  return e instanceof Error && connectionMessages.test(e.message)
}

/**
 * Whether calling again may succeed and is safe: the statement certainly did not take effect
 * (no connection could be made, or the server rolled the transaction back for a conflict).
 */
function isRetryable(e: unknown): boolean {
  const state = sqlState(e)
  if (['40001', '40P01', '57P03', '53300'].includes(state)) return true
  // A refused connection: nothing was sent.
  return ['ECONNREFUSED', 'ENOENT', 'EAI_AGAIN'].includes(state) || (e instanceof Error && /^timeout exceeded when trying to connect/.test(e.message))
}

/** The store's failure as the API reports it, or undefined when `e` is not one PostgreSQL reports for a busy, unreachable or full store. */
export function pgUnavailable(e: unknown, where: string, waitedMs: number): CodeboxError | undefined {
  const state = sqlState(e)
  if (state === '55P03' || state === '40001' || state === '40P01' || state === '57014') {
    return new CodeboxError(
      'Unavailable',
      `the store is busy: another connection holds a lock in the PostgreSQL database ${where} (waited ${waitedMs} ms); try again shortly; if it persists, end the session that holds it (pg_stat_activity)`,
      { details: { reason: 'StoreBusy', retryAfterSeconds: 1 }, cause: e },
    )
  }
  if (state === '53100') {
    return new CodeboxError('Unavailable', `the PostgreSQL store ${where} cannot write: its disk is full; nothing was changed`, {
      details: { reason: 'StoreDiskFull', retryAfterSeconds: 5 },
      cause: e,
    })
  }
  if (isConnectionFailure(e)) {
    const why = e instanceof Error ? e.message : String(e)
    return new CodeboxError('Unavailable', `the PostgreSQL store ${where} cannot be reached (${why}); try again shortly`, {
      details: { reason: 'StoreUnreachable', retryAfterSeconds: 5 },
      cause: e,
    })
  }
  return undefined
}

/**
 * `repo` with every method guarded: a call that failed before it could take effect (no
 * connection, a serialization conflict) is made again after a short, growing pause until
 * `db.busyWaitMs` have passed; a busy, unreachable or full store then surfaces as `pgUnavailable`.
 */
export function guardPg<T extends object>(repo: T, db: Db): T {
  return new Proxy(repo, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target)
      if (typeof value !== 'function') return value
      return async (...args: unknown[]): Promise<unknown> => {
        const started = Date.now()
        let pauseMs = 20
        for (;;) {
          try {
            return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args)
          } catch (e) {
            if (db.closed) throw new CodeboxError('Unavailable', 'the store is closed', { details: { reason: 'StoreClosed' }, cause: e })
            if (isRetryable(e) && Date.now() - started + pauseMs <= db.busyWaitMs) {
              await new Promise((resolve) => setTimeout(resolve, pauseMs))
              pauseMs = Math.min(pauseMs * 2, 250)
              continue
            }
            throw pgUnavailable(e, db.where, Date.now() - started) ?? e
          }
        }
      }
    },
  })
}

/** Runs an advisory write (a key's last-used time) that must not fail the call it is part of. */
export async function advisoryWrite(write: () => Promise<unknown>, where: string): Promise<void> {
  try {
    await write()
  } catch (e) {
    if (pgUnavailable(e, where, 0) === undefined) throw e
  }
}
