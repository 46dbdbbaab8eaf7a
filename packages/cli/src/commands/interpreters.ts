/** `codebox interpreters ls|create|rm`: named interpreter configurations with their default limits. */
import { checkPreload, validationError, type Interpreter } from '@codebox/core'
import { CodeboxClient } from '@codebox/sdk'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import { clientFlags, clientOptions, type CommandContext } from '../context.ts'
import { networkFlags } from '../network-flags.ts'
import { table } from '../render.ts'

const spec: FlagSpec = {
  description: { type: 'string', description: 'create: what it is for' },
  memory: { type: 'string', description: 'create: memory per session in MiB' },
  cpus: { type: 'string', description: 'create: CPU cores per session' },
  'call-timeout': { type: 'string', description: 'create: seconds per call' },
  'idle-timeout': { type: 'string', description: 'create: idle seconds before a session ends' },
  network: { type: 'string', description: 'create: SANDBOX (no network, default), PUBLIC (public addresses) or VPC (the --allow list)' },
  allow: { type: 'string', description: 'create: VPC allow-list, comma-separated (example.com, *.example.com, 10.0.0.0/8:443)' },
  preload: {
    type: 'string',
    description: 'create: Python modules its sessions import before hand-over, comma-separated; "" or none for a lean interpreter (default: the server\'s)',
  },
  driver: { type: 'string', description: "create: the sandbox driver of its sessions (bwrap, gvisor; default the server's)" },
  ...clientFlags,
  json: { type: 'boolean', description: 'print JSON' },
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const usage = helpText(
  'codebox interpreters ls | create NAME [--memory MiB] [--cpus N] [--call-timeout S] [--idle-timeout S] [--network MODE [--allow LIST]] [--preload MODULES] [--driver NAME] | rm ID',
  spec,
  [
    'codebox interpreters ls',
    'codebox interpreters create small --memory 512 --call-timeout 30',
    'codebox interpreters create strong --driver gvisor          # its sessions run under gVisor',
    'codebox interpreters create fetcher --network VPC --allow api.example.com,*.githubusercontent.com',
    'codebox interpreters create lean --preload none',
    'codebox interpreters create science --preload numpy,pandas,scipy.stats,matplotlib.pyplot',
    'codebox sessions start --interpreter small-a1B2c3D4e5',
    'codebox interpreters rm small-a1B2c3D4e5',
  ],
)

export async function run(argv: string[], ctx: CommandContext): Promise<number> {
  const { flags, positionals } = parseArgs(argv, spec)
  const [sub, arg] = positionals
  if (flags.help || !sub) {
    process.stdout.write(usage)
    return flags.help ? 0 : 64
  }
  const client = new CodeboxClient(clientOptions(flags, ctx))
  const show = (items: Interpreter[]): string =>
    table(
      ['INTERPRETER ID', 'TYPE', 'STATUS', 'MEMORY', 'CPUS', 'CALL TIMEOUT', 'NETWORK', 'PRELOAD', 'DESCRIPTION'],
      items.map((i) => [
        i.interpreterId,
        i.type,
        i.status,
        `${Math.round(i.limits.memoryBytes / 1024 ** 2)} MiB`,
        String(i.limits.cpuCores),
        `${i.limits.callTimeoutMs / 1000}s`,
        i.network.mode + (i.network.allow ? ` (${i.network.allow.join(' ')})` : ''),
        i.preload.length ? i.preload.join(',') : '-',
        i.description ?? '',
      ]),
    )
  switch (sub) {
    case 'ls': {
      const { items } = await client.interpreters.list()
      process.stdout.write(flags.json ? `${JSON.stringify(items)}\n` : show(items))
      return 0
    }
    case 'create': {
      if (!arg) throw validationError('NAME', 'name the interpreter')
      const num = (flag: string, scale: number): number | undefined => {
        if (flags[flag] === undefined) return undefined
        const n = Number(flags[flag])
        if (!Number.isFinite(n) || n <= 0) throw validationError(`--${flag}`, `must be a positive number, got ${String(flags[flag])}`)
        return n * scale
      }
      const limits = Object.fromEntries(
        Object.entries({
          memoryBytes: num('memory', 1024 ** 2),
          cpuCores: num('cpus', 1),
          callTimeoutMs: num('call-timeout', 1000),
          idleTimeoutMs: num('idle-timeout', 1000),
        }).filter(([, v]) => v !== undefined),
      )
      const preload = preloadFlag(flags.preload)
      const created = await client.interpreters.create({
        name: arg,
        description: flags.description as string | undefined,
        limits,
        network: networkFlags(flags, 'SANDBOX'),
        ...(preload ? { preload } : {}),
        ...(typeof flags.driver === 'string' ? { driver: flags.driver } : {}),
      })
      process.stdout.write(flags.json ? `${JSON.stringify(created)}\n` : `${created.interpreterId}\n`)
      return 0
    }
    case 'rm': {
      if (!arg) throw validationError('ID', 'name the interpreter to remove')
      const removed = await client.interpreters.delete(arg)
      process.stdout.write(flags.json ? `${JSON.stringify(removed)}\n` : `removed ${removed.interpreterId}\n`)
      return 0
    }
    default:
      process.stderr.write(`codebox interpreters: unknown subcommand ${JSON.stringify(sub)}\n\n${usage}`)
      return 64
  }
}

/** `--preload a,b.c`: the module list, [] for "" or none, undefined when the flag is absent. */
function preloadFlag(value: unknown): string[] | undefined {
  if (value === undefined) return undefined
  const text = String(value).trim()
  if (text === '' || text.toLowerCase() === 'none') return []
  return checkPreload(
    text.split(',').map((m) => m.trim()),
    '--preload',
  )
}
