/**
 * `codebox store migrate`: copies a SQLite store, every table and row, into an empty PostgreSQL
 * store, in one PostgreSQL transaction (all or nothing) read from one SQLite snapshot. Sealed
 * values (SigV4 secrets, runtime secrets, E2B sandbox environments) are copied as they are, so the
 * PostgreSQL store must be given the SQLite store's sealing key (its `<file>.key`); a different
 * key is refused before anything is written.
 */
import { existsSync, readFileSync } from 'node:fs'
import { DatabaseSync } from 'node:sqlite'
import { CodeboxError } from '@codebox/core'
import { Store } from '../store.ts'
import { builtInInterpreterId } from '../interpreters.ts'
import { PgStore } from './store.ts'
import type { Queryable } from './db.ts'

/**
 * The tables in an order that satisfies their foreign keys, each with how its rows are read in a
 * stable order. `runtime_logs` gets `log_seq` from SQLite's rowid (its insertion order).
 */
const tables: readonly { name: string; order: string; extra?: { column: string; from: string } }[] = [
  { name: 'tenants', order: 'id' },
  { name: 'api_keys', order: 'created_at, key_id' },
  { name: 'aws_keys', order: 'created_at, access_key_id' },
  { name: 'interpreters', order: 'created_at, interpreter_id' },
  { name: 'sessions', order: 'created_at, session_id' },
  { name: 'audit', order: 'id' },
  { name: 'conversations', order: 'tenant, conversation_id' },
  { name: 'conversation_turns', order: 'turn_id' },
  { name: 'runtime_bundles', order: 'created_at, bundle_id' },
  { name: 'runtime_bundle_chunks', order: 'bundle_id, seq' },
  { name: 'runtimes', order: 'created_at, runtime_id' },
  { name: 'runtime_versions', order: 'runtime_id, version' },
  { name: 'runtime_secrets', order: 'runtime_id, name' },
  { name: 'runtime_logs', order: 'rowid', extra: { column: 'log_seq', from: 'rowid' } },
  { name: 'runtime_log_chunks', order: 'session_id, seq' },
]

/** Identity columns whose sequence must continue after the copied ids. */
const identities = [
  ['audit', 'id'],
  ['conversation_turns', 'turn_id'],
  ['runtime_logs', 'log_seq'],
] as const

/** Rows copied, per table. */
export type CopyCounts = Record<string, number>

/** How many parameters one multi-row INSERT carries at most (PostgreSQL allows 65535). */
const maxParams = 10_000
/** Rows of a table holding large values (bundle chunks of 8 MiB) go one by one. */
const oneByOne = new Set(['runtime_bundle_chunks'])

/**
 * Copies the SQLite store in `from` (migrated to the latest schema first, as a server would) into
 * the PostgreSQL store at `to`, which must be empty (no tenant, key, session or any other row but
 * the built-in interpreter). `sealingKey` is the key the PostgreSQL replicas will be given: it
 * must be the SQLite store's. Returns the rows copied per table.
 */
export async function copySqliteToPostgres(from: string, to: string, sealingKey: Buffer): Promise<CopyCounts> {
  if (!existsSync(from)) throw new CodeboxError('NotFound', `--from: no SQLite store at ${from}`)
  // Brings the file to this codebox's schema (and creates its key file if it had none yet).
  Store.open(from).close()
  const sourceKey = Buffer.from(readFileSync(`${from}.key`, 'utf8').trim(), 'base64')
  if (!sourceKey.equals(sealingKey)) {
    throw new CodeboxError(
      'ValidationError',
      `the sealing key given (CODEBOX_SEALING_KEY or CODEBOX_SEALING_KEY_FILE) is not the one the secrets in ${from} are sealed with; give the PostgreSQL store that store's key: CODEBOX_SEALING_KEY_FILE=${from}.key (every replica needs it)`,
      { details: { field: 'CODEBOX_SEALING_KEY' } },
    )
  }
  const source = new DatabaseSync(from, { readOnly: true })
  const target = await PgStore.open(to, { sealingKey, busyWaitMs: 10_000, maxConnections: 1 })
  try {
    // One snapshot of the source: a server still writing to it cannot tear the copy.
    source.exec('BEGIN')
    return await target.db.tx(async (c) => {
      // Nothing else may write while the copy checks emptiness and fills the tables.
      await c.query(`LOCK TABLE ${tables.map((t) => t.name).join(', ')} IN EXCLUSIVE MODE`)
      await refuseNonEmpty(c, target.where)
      // The built-in interpreter comes from the source, with its own creation time.
      await c.query('DELETE FROM interpreters WHERE interpreter_id = $1', [builtInInterpreterId])
      const counts: CopyCounts = {}
      for (const table of tables) counts[table.name] = await copyTable(source, c, table)
      for (const [table, column] of identities) {
        await c.query(`SELECT setval(pg_get_serial_sequence($1, $2), coalesce((SELECT max(${column}) FROM ${table}), 0) + 1, false)`, [table, column])
      }
      return counts
    })
  } finally {
    if (source.isTransaction) source.exec('ROLLBACK')
    source.close()
    await target.close()
  }
}

async function refuseNonEmpty(c: Queryable, where: string): Promise<void> {
  const found: string[] = []
  for (const { name } of tables) {
    const filter = name === 'interpreters' ? ` WHERE interpreter_id <> '${builtInInterpreterId}'` : ''
    const n = (await c.query<{ n: number }>(`SELECT count(*) AS n FROM ${name}${filter}`)).rows[0]!.n
    if (n > 0) found.push(`${n} in ${name}`)
  }
  if (found.length) {
    throw new CodeboxError('Conflict', `the PostgreSQL store ${where} is not empty (${found.join(', ')}); migrate into a new, empty database`, {
      details: { rows: found },
    })
  }
}

async function copyTable(source: DatabaseSync, c: Queryable, table: (typeof tables)[number]): Promise<number> {
  const columns = (source.prepare(`PRAGMA table_info(${table.name})`).all() as { name: string }[]).map((r) => r.name)
  const select = [...columns, ...(table.extra ? [`${table.extra.from} AS ${table.extra.column}`] : [])]
  const target = [...columns, ...(table.extra ? [table.extra.column] : [])]
  const perInsert = oneByOne.has(table.name) ? 1 : Math.max(1, Math.floor(maxParams / target.length))
  let batch: unknown[][] = []
  let copied = 0
  const flush = async (): Promise<void> => {
    if (!batch.length) return
    const values: unknown[] = []
    const rows = batch.map((row) => `(${row.map((v) => `$${values.push(v)}`).join(', ')})`)
    await c.query(`INSERT INTO ${table.name} (${target.join(', ')}) VALUES ${rows.join(', ')}`, values)
    copied += batch.length
    batch = []
  }
  for (const row of source.prepare(`SELECT ${select.join(', ')} FROM ${table.name} ORDER BY ${table.order}`).iterate() as Iterable<Record<string, unknown>>) {
    batch.push(target.map((col) => toPg(row[col])))
    if (batch.length >= perInsert) await flush()
  }
  await flush()
  return copied
}

/** node:sqlite's values as pg parameters: BLOBs (Uint8Array) as Buffers for bytea. */
const toPg = (v: unknown): unknown => (v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : v)
