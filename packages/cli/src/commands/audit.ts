/** `codebox audit`: what ran, when, by which key, and how it ended — the tenant's audit log. */
import type { AuditEntry } from '@codebox/core'
import { CodeboxClient } from '@codebox/sdk'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import { clientFlags, clientOptions, type CommandContext } from '../context.ts'
import { table } from '../render.ts'

const spec: FlagSpec = {
  session: { short: 's', type: 'string', description: 'only this session, oldest first (default: the whole tenant, newest first)' },
  limit: { short: 'n', type: 'string', description: 'entries to show (default 100)' },
  ...clientFlags,
  json: { type: 'boolean', description: 'print JSON' },
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const usage = helpText('codebox audit [--session ID] [-n N]', spec, ['codebox audit --session "$id"', 'codebox audit -n 20 --json'])

export async function run(argv: string[], ctx: CommandContext): Promise<number> {
  const { flags } = parseArgs(argv, spec)
  if (flags.help) {
    process.stdout.write(usage)
    return 0
  }
  const client = new CodeboxClient(clientOptions(flags, ctx))
  const limit = flags.limit === undefined ? 100 : Number(flags.limit)
  const items: AuditEntry[] = []
  for await (const e of client.audit.listAll({ sessionId: flags.session as string | undefined, limit: Math.min(limit, 1000) })) {
    items.push(e)
    if (items.length >= limit) break
  }
  if (flags.json) process.stdout.write(`${JSON.stringify(items)}\n`)
  else
    process.stdout.write(
      table(
        ['TIME', 'SESSION', 'KEY', 'ACTION', 'LANG', 'BYTES', 'EXIT', 'MS', 'OUTCOME'],
        items.map((e) => [
          e.at,
          e.sessionId ?? '',
          e.keyId ?? '',
          e.action,
          e.language ?? '',
          e.codeBytes === undefined ? '' : String(e.codeBytes),
          e.exitCode === undefined ? '' : String(e.exitCode),
          e.durationMs.toFixed(1),
          e.outcome + (e.detail ? ` (${e.detail})` : ''),
        ]),
      ),
    )
  return 0
}
