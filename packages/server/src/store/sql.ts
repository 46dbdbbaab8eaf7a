/**
 * Small helpers shared by the repositories: transactions, constraint errors, mapping SQL NULL to
 * absent fields, and the opaque paging tokens of list calls.
 */
import type { DatabaseSync } from 'node:sqlite'
import { validationError } from '@codebox/core'

/**
 * Runs `fn` in one `BEGIN IMMEDIATE` transaction (the write lock is taken up front, so two
 * processes cannot both read and then both write), committing on return and rolling back on throw.
 * `fn` must be synchronous: an await inside it would let another call run on the one connection
 * in the middle of the transaction, so a promise returned from it is refused and rolled back.
 */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE')
  try {
    const result = fn()
    if (result instanceof Promise) throw new Error('a store transaction body must be synchronous (it returned a promise)')
    db.exec('COMMIT')
    return result
  } catch (e) {
    if (db.isTransaction) db.exec('ROLLBACK')
    throw e
  }
}

/** SQLITE_CONSTRAINT_UNIQUE and SQLITE_CONSTRAINT_PRIMARYKEY, the extended result codes. */
const uniqueErrcodes = new Set([2067, 1555])

/** Whether `e` is node:sqlite's error for a UNIQUE or PRIMARY KEY violation. */
export const isUniqueViolation = (e: unknown): boolean => uniqueErrcodes.has((e as { errcode?: unknown } | null)?.errcode as number)

/** `{[key]: value}`, or `{}` when the column is NULL: optional fields are absent, never null. */
export function opt<K extends string, V>(key: K, value: V | null | undefined): { [P in K]?: V } {
  return (value === null || value === undefined ? {} : { [key]: value }) as { [P in K]?: V }
}

/** The current time as the store writes it: ISO-8601 UTC with milliseconds. */
export const isoNow = (at: Date = new Date()): string => at.toISOString()

/** One page of a list call; `nextToken` is absent on the last page. */
export interface Page<T> {
  items: T[]
  nextToken?: string
}

/** Throws a ValidationError on `limit` unless it is a whole number ≥ 1. */
export function checkPageLimit(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1) throw validationError('limit', 'must be a whole number ≥ 1')
}

/**
 * The paging token of a list call: base64url of a small JSON object whose `k` names the list it
 * belongs to, so a token of one list is refused by another. Number fields must be integers.
 */
export function encodePageToken(kind: string, position: Record<string, string | number>): string {
  return Buffer.from(JSON.stringify({ k: kind, ...position }), 'utf8').toString('base64url')
}

/**
 * Decodes a token of `encodePageToken`, checking that it is of `kind` and that each field has the
 * type of `shape`; anything else is a ValidationError on `nextToken`.
 */
export function decodePageToken<S extends Record<string, 'string' | 'number'>>(
  kind: string,
  token: string,
  shape: S,
): { [P in keyof S]: S[P] extends 'string' ? string : number } {
  const bad = () => validationError('nextToken', 'is not a token this server issued')
  if (!/^[A-Za-z0-9_-]{1,400}$/.test(token)) throw bad()
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'))
  } catch {
    throw bad()
  }
  if (typeof parsed !== 'object' || parsed === null || (parsed as { k?: unknown }).k !== kind) throw bad()
  const fields = parsed as Record<string, unknown>
  for (const [name, type] of Object.entries(shape)) {
    const v = fields[name]
    if (typeof v !== type || (type === 'number' && !Number.isSafeInteger(v))) throw bad()
  }
  return parsed as { [P in keyof S]: S[P] extends 'string' ? string : number }
}
