/**
 * `codebox store migrate --from <sqlite file> --to <postgres URI>`: copies a SQLite store into an
 * empty PostgreSQL store in one transaction and prints what it copied. The PostgreSQL replicas
 * must share the SQLite store's sealing key, so the key given here (CODEBOX_SEALING_KEY or
 * CODEBOX_SEALING_KEY_FILE, as the replicas will get it) must be that store's `<file>.key`.
 */
import path from 'node:path'
import { validationError } from '@codebox/core'
import { copySqliteToPostgres, isPostgresUri, readSealingKey, sealingKeyFromEnv } from '@codebox/server'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import type { CommandContext } from '../context.ts'
import { table } from '../render.ts'

const spec: FlagSpec = {
  from: { type: 'string', description: 'the SQLite store to copy (e.g. /var/lib/codebox/codebox.db)' },
  to: { type: 'string', description: 'the empty PostgreSQL database (postgresql://user:password@host/db)' },
  json: { type: 'boolean', description: 'print the rows copied per table as JSON' },
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const usage = helpText('codebox store migrate --from FILE --to POSTGRES_URI', spec, [
  'CODEBOX_SEALING_KEY_FILE=/var/lib/codebox/codebox.db.key \\',
  '  codebox store migrate --from /var/lib/codebox/codebox.db --to postgresql://codebox@db.internal/codebox',
  '',
  'Stop the server first. The replicas then run with CODEBOX_DB=<the URI> and the same',
  'CODEBOX_SEALING_KEY_FILE (the SQLite store\u2019s key file), see docs/operations.md.',
])

export async function run(argv: string[], ctx: CommandContext): Promise<number> {
  const { flags, positionals } = parseArgs(argv, spec)
  if (flags.help || positionals[0] !== 'migrate') {
    process.stdout.write(usage)
    return flags.help ? 0 : 64
  }
  if (positionals.length > 1) throw validationError(positionals[1]!, 'unexpected argument; store migrate takes --from and --to')
  if (typeof flags.from !== 'string' || !flags.from) throw validationError('--from', 'is required: the SQLite store file to copy')
  if (typeof flags.to !== 'string' || !isPostgresUri(flags.to))
    throw validationError('--to', 'is required: a postgres:// or postgresql:// URI of an empty database')
  const source = sealingKeyFromEnv(ctx.env)
  if (!source) {
    throw validationError(
      'CODEBOX_SEALING_KEY',
      `or CODEBOX_SEALING_KEY_FILE is required: the key the PostgreSQL replicas will share, which must be the SQLite store's (CODEBOX_SEALING_KEY_FILE=${path.resolve(flags.from)}.key)`,
    )
  }
  const counts = await copySqliteToPostgres(path.resolve(flags.from), flags.to, readSealingKey(source))
  if (flags.json) process.stdout.write(`${JSON.stringify(counts)}\n`)
  else {
    process.stdout.write(
      table(
        ['TABLE', 'ROWS'],
        Object.entries(counts).map(([name, n]) => [name, String(n)]),
      ),
    )
    const total = Object.values(counts).reduce((a, b) => a + b, 0)
    process.stderr.write(`copied ${total} rows in one transaction; start the replicas with CODEBOX_DB set to the PostgreSQL URI and the same sealing key\n`)
  }
  return 0
}
