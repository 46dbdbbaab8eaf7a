/** `codebox sessions start|ls|get|stop`: sessions on a codebox server, for people and scripts. */
import { validationError, type SessionInfo } from '@codebox/core'
import { CodeboxClient } from '@codebox/sdk'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import { clientFlags, clientOptions, type CommandContext } from '../context.ts'
import { table } from '../render.ts'

const spec: FlagSpec = {
  timeout: { type: 'string', description: 'start: end the session after this many idle seconds (default 900)' },
  in: { type: 'string', description: 'deadline: the session ends this many seconds from now, used or not' },
  name: { type: 'string', description: 'start: a name for the session' },
  interpreter: { type: 'string', description: 'start: interpreter id (default codebox.v1)' },
  status: { type: 'string', description: 'ls: READY or TERMINATED' },
  all: { short: 'a', type: 'boolean', description: 'ls: every page, not only the newest 50' },
  ...clientFlags,
  json: { type: 'boolean', description: 'print JSON' },
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const usage = helpText('codebox sessions start [--timeout S] [--name N] | ls [--status S] [--all] | get ID | stop ID | deadline ID --in S', spec, [
  'codebox sessions start --timeout 900        # prints the session id',
  'codebox sessions ls --status READY',
  'codebox sessions stop 0f3k...',
  'codebox sessions deadline 0f3k... --in 3600   # ends in an hour (at most the interpreter lifetime)',
  'id=$(codebox sessions start) && codebox exec --session "$id" "x = 1"',
])

export async function run(argv: string[], ctx: CommandContext): Promise<number> {
  const { flags, positionals } = parseArgs(argv, spec)
  const [sub, id] = positionals
  if (flags.help || !sub) {
    process.stdout.write(usage)
    return flags.help ? 0 : 64
  }
  const client = new CodeboxClient(clientOptions(flags, ctx))
  const print = (info: SessionInfo, human: string): void => void process.stdout.write(flags.json ? `${JSON.stringify(info)}\n` : `${human}\n`)
  switch (sub) {
    case 'start': {
      const timeout = flags.timeout === undefined ? undefined : Number(flags.timeout)
      if (timeout !== undefined && !Number.isInteger(timeout)) throw validationError('--timeout', `must be whole seconds, got ${String(flags.timeout)}`)
      const info = await client.sessions.start({
        timeoutSeconds: timeout,
        name: flags.name as string | undefined,
        ...(flags.interpreter ? { interpreterId: String(flags.interpreter) } : {}),
      })
      print(info, info.sessionId)
      return 0
    }
    case 'ls': {
      const status = flags.status === undefined ? undefined : String(flags.status).toUpperCase()
      if (status !== undefined && status !== 'READY' && status !== 'TERMINATED') throw validationError('--status', 'must be READY or TERMINATED')
      const items: SessionInfo[] = []
      if (flags.all) for await (const s of client.sessions.listAll({ status })) items.push(s)
      else items.push(...(await client.sessions.list({ status })).items)
      if (flags.json) process.stdout.write(`${JSON.stringify(items)}\n`)
      else
        process.stdout.write(
          table(
            ['SESSION ID', 'STATUS', 'NAME', 'CREATED', 'IDLE TIMEOUT', 'ENDED'],
            items.map((s) => [s.sessionId, s.status, s.name, s.createdAt, `${s.timeoutSeconds}s`, s.endReason ? `${s.endedAt} (${s.endReason})` : '']),
          ),
        )
      return 0
    }
    case 'deadline': {
      if (!id) throw validationError('ID', 'name the session whose lifetime to move')
      const seconds = Number(flags.in)
      if (flags.in === undefined || !Number.isInteger(seconds) || seconds < 0)
        throw validationError('--in', `must be whole seconds from now, got ${String(flags.in)}`)
      const info = await client.sessions.setDeadline(id, { endsInSeconds: seconds })
      print(info, `${info.sessionId} ends at ${info.endsAt ?? info.endedAt ?? ''}`)
      return 0
    }
    case 'get':
    case 'stop': {
      if (!id) throw validationError('ID', `name the session to ${sub}`)
      const info = sub === 'get' ? await client.sessions.get(id) : await client.sessions.stop(id)
      print(
        info,
        sub === 'stop'
          ? `stopped ${info.sessionId}`
          : table(
              ['SESSION ID', 'STATUS', 'NAME', 'CREATED', 'ENDED'],
              [[info.sessionId, info.status, info.name, info.createdAt, info.endReason ?? '']],
            ).trimEnd(),
      )
      return 0
    }
    default:
      process.stderr.write(`codebox sessions: unknown subcommand ${JSON.stringify(sub)}\n\n${usage}`)
      return 64
  }
}
