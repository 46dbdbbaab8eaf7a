/**
 * Which store a server or the CLI opens: `CODEBOX_DB` is a file path (the embedded SQLite store,
 * the default `<state dir>/codebox.db`) or a `postgres://` / `postgresql://` URI (PostgreSQL, for
 * many replicas). With PostgreSQL the sealing key comes from `CODEBOX_SEALING_KEY` (base64 of 32
 * bytes) or `CODEBOX_SEALING_KEY_FILE` (a file holding that), the same for every replica; SQLite
 * keeps its own in `<file>.key`.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { validationError } from '@codebox/core'
import { PgStore } from './postgres/store.ts'
import { redactUri } from './postgres/db.ts'
import { Store } from './store.ts'
import type { StoreApi } from './types.ts'

/** Where the sealing key of a PostgreSQL store comes from. */
export type SealingKeySource = { variable: 'CODEBOX_SEALING_KEY'; key: Buffer } | { variable: 'CODEBOX_SEALING_KEY_FILE'; file: string }

export type StoreConfig =
  | { kind: 'sqlite'; path: string }
  | {
      kind: 'postgres'
      uri: string
      /** The URI without its password, for messages and logs. */
      where: string
      sealingKey: SealingKeySource
    }

/** An open store of either backend. */
export type OpenStore = (Store | PgStore) & StoreApi

/** Whether `value` of CODEBOX_DB names a PostgreSQL database. */
export const isPostgresUri = (value: string): boolean => /^postgres(ql)?:\/\//i.test(value)

/** The base64 key of CODEBOX_SEALING_KEY (or a key file's content) as 32 bytes; ValidationError on `field` otherwise. */
export function parseSealingKey(text: string, field: string): Buffer {
  const trimmed = text.trim()
  const key = Buffer.from(trimmed, 'base64')
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed) || key.length !== 32) {
    throw validationError(field, 'must be 32 random bytes in base64 (44 characters), e.g. from: openssl rand -base64 32')
  }
  return key
}

/** The sealing key's source from the environment; undefined when neither variable is set. */
export function sealingKeyFromEnv(env: Record<string, string | undefined>): SealingKeySource | undefined {
  const value = env.CODEBOX_SEALING_KEY
  const file = env.CODEBOX_SEALING_KEY_FILE
  if (value && file) throw validationError('CODEBOX_SEALING_KEY', 'and CODEBOX_SEALING_KEY_FILE are both set; set one')
  if (value) return { variable: 'CODEBOX_SEALING_KEY', key: parseSealingKey(value, 'CODEBOX_SEALING_KEY') }
  if (file) return { variable: 'CODEBOX_SEALING_KEY_FILE', file: path.resolve(file) }
  return undefined
}

/** The 32-byte key of `source`: a key file is read now (ValidationError naming it if unreadable or malformed). */
export function readSealingKey(source: SealingKeySource): Buffer {
  if (source.variable === 'CODEBOX_SEALING_KEY') return source.key
  let text: string
  try {
    text = readFileSync(source.file, 'utf8')
  } catch (e) {
    throw validationError('CODEBOX_SEALING_KEY_FILE', `cannot read ${source.file}: ${(e as Error).message}`)
  }
  return parseSealingKey(text, `CODEBOX_SEALING_KEY_FILE (${source.file})`)
}

/**
 * The store `CODEBOX_DB` names (`value`; empty for the default file in `stateDir`), with the
 * sealing key variables of `env`. A PostgreSQL store without a sealing key is refused: each replica
 * would make its own and could not read the others' secrets.
 */
export function storeConfigFromEnv(env: Record<string, string | undefined>, stateDir: string): StoreConfig {
  const value = env.CODEBOX_DB ?? ''
  if (isPostgresUri(value)) {
    // libpq's form: scheme://[user[:password]@][host][:port][/dbname][?param=value&...]
    const rest = value.replace(/^[a-z]+:\/\//i, '').replace(/#.*$/, '')
    const [beforeQuery = '', query = ''] = rest.split(/\?(.*)/s)
    const slash = beforeQuery.indexOf('/', beforeQuery.lastIndexOf('@') + 1)
    const database = slash === -1 ? '' : beforeQuery.slice(slash + 1)
    if (!database && !new URLSearchParams(query).get('dbname')) {
      throw validationError(
        'CODEBOX_DB',
        `names no database: ${redactUri(value)} (postgresql://user:password@host:5432/database, or postgresql:///database?host=/var/run/postgresql)`,
      )
    }
    const sealingKey = sealingKeyFromEnv(env)
    if (!sealingKey) {
      throw validationError(
        'CODEBOX_SEALING_KEY',
        'is required with a PostgreSQL store (CODEBOX_DB is a postgres URI): give every replica the same key, as CODEBOX_SEALING_KEY (base64 of 32 bytes: openssl rand -base64 32) or CODEBOX_SEALING_KEY_FILE (a file holding it); see docs/config.md',
      )
    }
    return { kind: 'postgres', uri: value, where: redactUri(value), sealingKey }
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
    throw validationError('CODEBOX_DB', `must be a file path (SQLite) or a postgres:// or postgresql:// URI, got ${redactUri(value)}`)
  }
  if (env.CODEBOX_SEALING_KEY || env.CODEBOX_SEALING_KEY_FILE) {
    throw validationError(
      env.CODEBOX_SEALING_KEY ? 'CODEBOX_SEALING_KEY' : 'CODEBOX_SEALING_KEY_FILE',
      'applies to a PostgreSQL store only; the SQLite store keeps its sealing key in <CODEBOX_DB>.key',
    )
  }
  return { kind: 'sqlite', path: path.resolve(value || path.join(stateDir, 'codebox.db')) }
}

/** Opens (and migrates) the store `config` names. */
export async function openStore(config: StoreConfig, options: { busyWaitMs?: number } = {}): Promise<OpenStore> {
  if (config.kind === 'sqlite') return Store.open(config.path, options)
  return PgStore.open(config.uri, { sealingKey: readSealingKey(config.sealingKey), ...options })
}

/** What a message may say about where the store is: the file, or the URI without its password. */
export const describeStore = (config: StoreConfig): string => (config.kind === 'sqlite' ? config.path : config.where)
