/**
 * `codebox keys` and `codebox tenants`: API keys and tenant quotas, managed on the server's
 * machine directly in its store, SQLite or PostgreSQL as CODEBOX_DB says (the power to mint keys
 * is the root of trust, so it is not an API). Works while the server runs; the server (every
 * replica) sees changes at once.
 */
import { accessKeyIdPattern, loadServerConfig, openStore, type OpenStore } from '@codebox/server'
import { validationError } from '@codebox/core'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import type { CommandContext } from '../context.ts'
import { table } from '../render.ts'

const keySpec: FlagSpec = {
  tenant: { short: 't', type: 'string', description: 'the tenant the key belongs to (created if new)' },
  name: { type: 'string', description: 'a label for the key' },
  aws: { type: 'boolean', description: 'an access-key pair for the AgentCore API (SigV4) instead of an API key' },
  json: { type: 'boolean', description: 'print JSON' },
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const keysUsage = helpText('codebox keys create --tenant NAME [--name LABEL] [--aws] | keys ls [--tenant NAME] | keys revoke KEY_ID', keySpec, [
  'codebox keys create --tenant acme            # prints the key once; store it now',
  'codebox keys create --tenant acme --aws      # access key id + secret for the AWS SDKs (SigV4)',
  'codebox keys ls',
  'codebox keys revoke key_3kTq9ZrA1bXy',
  'codebox keys revoke CBXAEXAMPLE2345EXAMPL',
])

/** The server's store as CODEBOX_DB names it: the SQLite file, or the PostgreSQL database every replica shares. */
function open(ctx: CommandContext): Promise<OpenStore> {
  return openStore(loadServerConfig(ctx.env).store)
}

export async function keys(argv: string[], ctx: CommandContext): Promise<number> {
  const { flags, positionals } = parseArgs(argv, keySpec)
  const [sub, arg] = positionals
  if (flags.help || !sub) {
    process.stdout.write(keysUsage)
    return flags.help ? 0 : 64
  }
  await using store = await open(ctx)
  switch (sub) {
    case 'create': {
      if (typeof flags.tenant !== 'string') throw validationError('--tenant', 'is required: the tenant the key belongs to')
      if (flags.aws) {
        const { accessKeyId, secretAccessKey, record } = await store.awsKeys.create({ tenant: flags.tenant, name: flags.name as string | undefined })
        if (flags.json) process.stdout.write(`${JSON.stringify({ ...record, secretAccessKey })}\n`)
        else {
          process.stderr.write(`AWS access key for tenant ${record.tenant} (the secret is shown once):\n`)
          process.stdout.write(`AWS_ACCESS_KEY_ID=${accessKeyId}\nAWS_SECRET_ACCESS_KEY=${secretAccessKey}\n`)
          process.stderr.write('Point the AWS SDK at this server with endpoint: <codebox URL>; any region works.\n')
        }
        return 0
      }
      const { secret, record } = await store.keys.create({ tenant: flags.tenant, name: flags.name as string | undefined })
      if (flags.json) process.stdout.write(`${JSON.stringify({ key: secret, ...record })}\n`)
      else {
        process.stderr.write(`API key ${record.keyId} for tenant ${record.tenant} (shown once; only its hash is stored):\n`)
        process.stdout.write(`${secret}\n`)
        process.stderr.write(`Use it as CODEBOX_API_KEY=${record.prefix}… or Authorization: Bearer <key>.\n`)
      }
      return 0
    }
    case 'ls': {
      const tenant = flags.tenant as string | undefined
      const rows = await store.keys.list(tenant)
      const awsRows = await store.awsKeys.list(tenant)
      if (flags.json) process.stdout.write(`${JSON.stringify([...rows.map((k) => ({ kind: 'api', ...k })), ...awsRows.map((k) => ({ kind: 'aws', ...k }))])}\n`)
      else
        process.stdout.write(
          table(
            ['KEY ID', 'KIND', 'TENANT', 'PREFIX', 'NAME', 'CREATED', 'LAST USED', 'REVOKED'],
            [
              ...rows.map((k) => [k.keyId, 'api', k.tenant, `${k.prefix}…`, k.name ?? '', k.createdAt, k.lastUsedAt ?? '', k.revokedAt ?? '']),
              ...awsRows.map((k) => [k.accessKeyId, 'aws', k.tenant, '', k.name ?? '', k.createdAt, k.lastUsedAt ?? '', k.revokedAt ?? '']),
            ],
          ),
        )
      return 0
    }
    case 'revoke': {
      if (!arg) throw validationError('KEY_ID', 'name the key to revoke (codebox keys ls)')
      const record = accessKeyIdPattern.test(arg) ? await store.awsKeys.revoke(arg) : await store.keys.revoke(arg)
      if (flags.json) process.stdout.write(`${JSON.stringify(record)}\n`)
      else process.stdout.write(`revoked ${arg} (tenant ${record.tenant})\n`)
      return 0
    }
    default:
      process.stderr.write(`codebox keys: unknown subcommand ${JSON.stringify(sub)}\n\n${keysUsage}`)
      return 64
  }
}

const tenantSpec: FlagSpec = {
  'max-sessions': { type: 'string', description: 'sessions running at once ("default" to reset)' },
  'starts-per-minute': { type: 'string', description: 'session starts per minute ("default" to reset)' },
  'invokes-per-second': { type: 'string', description: 'invocations per second ("default" to reset)' },
  'agent-turns-per-minute': { type: 'string', description: 'agent turns per minute ("default" to reset)' },
  json: { type: 'boolean', description: 'print JSON' },
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const tenantsUsage = helpText(
  'codebox tenants ls | tenants set TENANT [--max-sessions N] [--starts-per-minute N] [--invokes-per-second N] [--agent-turns-per-minute N]',
  tenantSpec,
  ['codebox tenants ls', 'codebox tenants set acme --max-sessions 100 --invokes-per-second 500', 'codebox tenants set acme --max-sessions default'],
)

export async function tenants(argv: string[], ctx: CommandContext): Promise<number> {
  const { flags, positionals } = parseArgs(argv, tenantSpec)
  const [sub, name] = positionals
  if (flags.help || !sub) {
    process.stdout.write(tenantsUsage)
    return flags.help ? 0 : 64
  }
  const config = loadServerConfig(ctx.env)
  await using store = await openStore(config.store)
  if (sub === 'set') {
    if (!name) throw validationError('TENANT', 'name the tenant')
    const quota = (flag: string): number | null | undefined => {
      const v = flags[flag]
      if (v === undefined) return undefined
      if (v === 'default') return null
      const n = Number(v)
      if (!Number.isFinite(n) || n < 0) throw validationError(`--${flag}`, `must be a number or "default", got ${String(v)}`)
      return n
    }
    await store.tenants.ensure(name)
    const t = await store.tenants.setQuotas(name, {
      maxSessions: quota('max-sessions'),
      startsPerMinute: quota('starts-per-minute'),
      invokesPerSecond: quota('invokes-per-second'),
      agentTurnsPerMinute: quota('agent-turns-per-minute'),
    })
    process.stdout.write(flags.json ? `${JSON.stringify(t)}\n` : `tenant ${t.id}: ${describeQuotas(t, config.quotas)}\n`)
    return 0
  }
  if (sub === 'ls') {
    const rows = await store.tenants.list()
    if (flags.json) process.stdout.write(`${JSON.stringify(rows)}\n`)
    else
      process.stdout.write(
        table(
          ['TENANT', 'CREATED', 'QUOTAS'],
          rows.map((t) => [t.id, t.createdAt, describeQuotas(t, config.quotas)]),
        ),
      )
    return 0
  }
  process.stderr.write(`codebox tenants: unknown subcommand ${JSON.stringify(sub)}\n\n${tenantsUsage}`)
  return 64
}

function describeQuotas(
  t: { maxSessions?: number; startsPerMinute?: number; invokesPerSecond?: number; agentTurnsPerMinute?: number },
  d: { maxSessions: number; startsPerMinute: number; invokesPerSecond: number; agentTurnsPerMinute: number },
): string {
  const show = (v: number | undefined, def: number): string => (v === undefined ? `${def} (default)` : String(v))
  return `max sessions ${show(t.maxSessions, d.maxSessions)}, starts/min ${show(t.startsPerMinute, d.startsPerMinute)}, invokes/s ${show(t.invokesPerSecond, d.invokesPerSecond)}, agent turns/min ${show(t.agentTurnsPerMinute, d.agentTurnsPerMinute)}`
}
