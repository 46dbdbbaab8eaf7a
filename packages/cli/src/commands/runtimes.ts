/**
 * `codebox runtimes deploy|ls|get|versions|rollback|rm|sessions|stop|logs|invoke|secrets`: hosted
 * agent runtimes. `deploy` packs a directory (with its node_modules or Python dependencies; `npm ci
 * --omit=dev` first when there is a package-lock.json and no node_modules) into a gzipped tar as it
 * uploads it, and deploys it. `invoke` reaches a hosted agent (POST /v1/runtimes/{id}/invocations).
 */
import { spawn } from 'node:child_process'
import { readFile, stat } from 'node:fs/promises'
import path from 'node:path'
import { create } from 'tar'
import { validationError, type DeployRuntimeRequest, type RuntimeInfo } from '@codebox/core'
import { CodeboxClient } from '@codebox/sdk'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import { clientFlags, clientOptions, type CommandContext } from '../context.ts'
import { networkFlags } from '../network-flags.ts'
import { table } from '../render.ts'

const spec: FlagSpec = {
  name: { type: 'string', description: 'deploy: the runtime’s name (a letter, then letters, digits, _)' },
  entrypoint: { type: 'string', description: 'deploy: the file to run (default: index.js, main.py, app.py, agent.py or package.json main)' },
  description: { type: 'string', description: 'deploy: what it is for' },
  protocol: { type: 'string', description: 'deploy: HTTP (default), MCP or A2A' },
  network: { type: 'string', description: 'deploy: SANDBOX (no network, default), PUBLIC or VPC (the --allow list)' },
  allow: { type: 'string', description: 'deploy: VPC allow-list, comma-separated' },
  'idle-timeout': { type: 'string', description: 'deploy: seconds without a request before a session ends (60-28800, default 900)' },
  'max-lifetime': { type: 'string', description: 'deploy: seconds a session may live (60-28800, default 28800)' },
  session: { type: 'string', description: 'logs: only this runtime session; invoke: the runtime session to reach (default a new one, printed on stderr)' },
  qualifier: { type: 'string', description: 'invoke: the endpoint (DEFAULT) or a version number' },
  ...clientFlags,
  json: { type: 'boolean', description: 'print JSON' },
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const usage = helpText(
  'codebox runtimes deploy DIR --name NAME [--entrypoint FILE] [--protocol HTTP|MCP|A2A] [--network MODE [--allow LIST]] [--idle-timeout S] [--max-lifetime S] | ls | get ID | versions ID | rollback ID VERSION | rm ID | sessions ID | stop ID SESSION | logs ID [--session SESSION] | invoke ID [PAYLOAD|-] [--session SESSION] [--qualifier Q] | secrets set ID NAME [VALUE] | secrets ls ID | secrets rm ID NAME',
  spec,
  [
    'codebox runtimes deploy ./my-agent --name weather',
    'codebox runtimes deploy ./py-agent --name helper --entrypoint app.py --idle-timeout 300 --json',
    'codebox runtimes ls',
    'codebox runtimes versions weather',
    'codebox runtimes rollback weather 1',
    'codebox runtimes sessions weather',
    'codebox runtimes invoke weather \'{"prompt": "Will it rain in Seoul?"}\' --session <runtime session id>',
    'codebox runtimes logs weather --session <runtime session id>',
    'echo "$ANTHROPIC_API_KEY" | codebox runtimes secrets set weather ANTHROPIC_API_KEY',
    'codebox runtimes rm weather',
  ],
)

/** Default entrypoints, in order, before package.json's `main`. */
const defaultEntrypoints = ['index.js', 'main.py', 'app.py', 'agent.py']

export async function run(argv: string[], ctx: CommandContext): Promise<number> {
  const { flags, positionals } = parseArgs(argv, spec)
  const [sub, ...args] = positionals
  if (flags.help || !sub) {
    process.stdout.write(usage)
    return flags.help ? 0 : 64
  }
  const client = new CodeboxClient(clientOptions(flags, ctx))
  const out = (value: unknown, text: string): void => void process.stdout.write(flags.json ? `${JSON.stringify(value)}\n` : text)
  const need = (value: string | undefined, what: string): string => {
    if (!value) throw validationError(what, `name the ${what.toLowerCase()}; see codebox runtimes --help`)
    return value
  }
  switch (sub) {
    case 'deploy': {
      const deployed = await deploy(client, need(args[0], 'DIR'), flags)
      out(
        { agentRuntimeArn: deployed.agentRuntimeArn, agentRuntimeId: deployed.agentRuntimeId, agentRuntimeVersion: deployed.agentRuntimeVersion },
        `${deployed.agentRuntimeArn}\nid       ${deployed.agentRuntimeId}\nversion  ${deployed.agentRuntimeVersion}\n`,
      )
      return 0
    }
    case 'ls': {
      const { items } = await client.runtimes.list()
      out(items, show(items))
      return 0
    }
    case 'get': {
      const r = await client.runtimes.get(need(args[0], 'ID'))
      out(r, `${JSON.stringify(r, null, 2)}\n`)
      return 0
    }
    case 'versions': {
      const { items } = await client.runtimes.versions(need(args[0], 'ID'))
      out(
        items,
        table(
          ['VERSION', 'CREATED', 'ENTRYPOINT', 'PROTOCOL', 'NETWORK', 'BYTES', 'SHA256'],
          items.map((v) => [
            v.agentRuntimeVersion,
            v.createdAt,
            v.settings.entrypoint,
            v.settings.protocol,
            v.settings.network.mode,
            String(v.bundle.bytes),
            v.bundle.sha256.slice(0, 12),
          ]),
        ),
      )
      return 0
    }
    case 'rollback': {
      const version = Number(need(args[1], 'VERSION'))
      if (!Number.isSafeInteger(version) || version < 1) throw validationError('VERSION', `must be a version number, got ${args[1]}`)
      const r = await client.runtimes.rollback(need(args[0], 'ID'), version)
      out(r, `${r.agentRuntimeId}: DEFAULT now serves version ${r.agentRuntimeVersion} (until the next deploy)\n`)
      return 0
    }
    case 'rm': {
      const r = await client.runtimes.delete(need(args[0], 'ID'))
      out(r, `removed ${r.agentRuntimeId}\n`)
      return 0
    }
    case 'sessions': {
      const { items } = await client.runtimes.sessions(need(args[0], 'ID'))
      out(
        items,
        table(
          ['RUNTIME SESSION', 'VERSION', 'SESSION', 'STARTED', 'LAST INVOCATION', 'ACTIVE'],
          items.map((s) => [s.runtimeSessionId, s.agentRuntimeVersion, s.sessionId, s.startedAt, s.lastInvocationAt, String(s.activeInvocations)]),
        ),
      )
      return 0
    }
    case 'stop': {
      const id = need(args[0], 'ID')
      const runtimeSessionId = need(args[1], 'SESSION')
      await client.runtimes.stopSession(id, runtimeSessionId)
      out({ stopped: runtimeSessionId }, `stopped ${runtimeSessionId}\n`)
      return 0
    }
    case 'logs': {
      const session = typeof flags.session === 'string' ? flags.session : undefined
      const { items } = await client.runtimes.logs(need(args[0], 'ID'), session)
      out(
        items,
        items
          .map(
            (e) =>
              `== ${e.runtimeSessionId} (version ${e.agentRuntimeVersion}, session ${e.sessionId}, ${e.startedAt}${e.endedAt ? ` to ${e.endedAt}: ${e.ended ?? ''}` : ', running'})\n` +
              (e.droppedBytes ? `[${e.droppedBytes} earlier bytes dropped]\n` : '') +
              e.text +
              (e.text.endsWith('\n') || !e.text ? '' : '\n'),
          )
          .join(''),
      )
      return 0
    }
    case 'invoke':
      return invoke(client, need(args[0], 'ID'), args[1], flags)
    case 'secrets':
      return secrets(client, args, flags.json === true)
    default:
      process.stderr.write(`codebox runtimes: unknown subcommand ${JSON.stringify(sub)}\n\n${usage}`)
      return 64
  }
}

function show(items: RuntimeInfo[]): string {
  return table(
    ['RUNTIME ID', 'NAME', 'DEFAULT', 'LATEST', 'UPDATED', 'DESCRIPTION'],
    items.map((r) => [
      r.agentRuntimeId,
      r.agentRuntimeName,
      r.agentRuntimeVersion + (r.pinned ? ' (pinned)' : ''),
      r.latestVersion,
      r.lastUpdatedAt,
      r.description ?? '',
    ]),
  )
}

async function secrets(client: CodeboxClient, args: string[], json: boolean): Promise<number> {
  const [action, id, name, value] = args
  if (!id) throw validationError('ID', 'name the runtime: codebox runtimes secrets set|ls|rm ID ...')
  switch (action) {
    case 'set': {
      if (!name) throw validationError('NAME', 'name the secret')
      // From the argument, or from standard input (so it stays out of the shell history).
      const secret = value ?? (await readStdin()).replace(/\r?\n$/, '')
      if (secret === '') throw validationError('VALUE', 'the secret is empty: give it as an argument or on standard input')
      const r = await client.runtimes.secrets.set(id, name, secret)
      process.stdout.write(json ? `${JSON.stringify(r)}\n` : `set ${r.name}\n`)
      return 0
    }
    case 'ls': {
      const { items } = await client.runtimes.secrets.list(id)
      process.stdout.write(
        json
          ? `${JSON.stringify(items)}\n`
          : table(
              ['NAME', 'UPDATED'],
              items.map((s) => [s.name, s.updatedAt]),
            ),
      )
      return 0
    }
    case 'rm': {
      if (!name) throw validationError('NAME', 'name the secret')
      await client.runtimes.secrets.delete(id, name)
      process.stdout.write(json ? `${JSON.stringify({ name })}\n` : `removed ${name}\n`)
      return 0
    }
    default:
      process.stderr.write(`codebox runtimes secrets: expected set, ls or rm, got ${JSON.stringify(action ?? '')}\n`)
      return 64
  }
}

/**
 * Invokes a hosted agent with PAYLOAD (or standard input for `-`; `{}` when absent) and prints its
 * answer: a JSON answer as it came, an SSE answer's event data line by line as they arrive. The
 * runtime session id goes to stderr, so the next call can reach the same agent.
 */
async function invoke(client: CodeboxClient, id: string, payloadArg: string | undefined, flags: Record<string, unknown>): Promise<number> {
  const payload = payloadArg === '-' ? await readStdin() : (payloadArg ?? '{}')
  const json = flags.json === true
  const answer = await client.runtimes.invoke(id, payload, {
    ...(typeof flags.session === 'string' ? { session: flags.session } : {}),
    ...(typeof flags.qualifier === 'string' ? { qualifier: flags.qualifier } : {}),
  })
  process.stderr.write(`runtime session ${answer.runtimeSessionId}\n`)
  if (answer.streaming) {
    for await (const e of answer.events()) {
      process.stdout.write(
        json ? `${JSON.stringify({ event: e.event, data: jsonOrText(e.data), ...(e.id !== undefined ? { id: e.id } : {}) })}\n` : `${e.data}\n`,
      )
    }
    return 0
  }
  const text = await answer.text()
  if (json)
    process.stdout.write(`${JSON.stringify({ runtimeSessionId: answer.runtimeSessionId, contentType: answer.contentType, response: jsonOrText(text) })}\n`)
  else process.stdout.write(text.endsWith('\n') || text === '' ? text : `${text}\n`)
  return 0
}

/** `text` parsed when it is JSON, else the text itself. */
function jsonOrText(text: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch {
    return text
  }
}

/** Packs, uploads and deploys `dir`; progress goes to stderr. */
async function deploy(client: CodeboxClient, dir: string, flags: Record<string, unknown>): Promise<RuntimeInfo> {
  const root = path.resolve(dir)
  if (!(await stat(root).catch(() => undefined))?.isDirectory()) throw validationError('DIR', `${dir} is not a directory`)
  const name = flags.name
  if (typeof name !== 'string' || name === '') throw validationError('--name', 'name the runtime: codebox runtimes deploy DIR --name NAME')
  if ((await exists(path.join(root, 'package-lock.json'))) && !(await exists(path.join(root, 'node_modules')))) await npmCi(root)
  const entrypoint = typeof flags.entrypoint === 'string' ? flags.entrypoint : await defaultEntrypoint(root)
  if (!(await stat(path.join(root, entrypoint)).catch(() => undefined))?.isFile()) {
    throw validationError('--entrypoint', `${entrypoint} is not a file in ${dir}`)
  }
  const request: Omit<DeployRuntimeRequest, 'bundleId'> = {
    name,
    entrypoint,
    ...(typeof flags.description === 'string' ? { description: flags.description } : {}),
    ...(typeof flags.protocol === 'string' ? { protocol: oneOf(flags.protocol, ['HTTP', 'MCP', 'A2A'] as const, '--protocol') } : {}),
    ...network(flags),
    ...seconds(flags, 'idle-timeout', 'idleTimeoutSeconds'),
    ...seconds(flags, 'max-lifetime', 'maxLifetimeSeconds'),
  }
  // Packed as it is uploaded: nothing of it is held in memory or written to disk, and the server's
  // bundle limit (CODEBOX_RUNTIME_MAX_BUNDLE_BYTES) stops the upload and with it the packing.
  process.stderr.write(`packing and uploading ${root}\n`)
  let sent = 0
  // Everything but .git; symbolic links are kept as links (the server refuses any that leave the bundle).
  const packed = create({ gzip: true, portable: true, cwd: root, filter: (p) => !/(^|\/)\.git(\/|$)/.test(p) }, ['.']).pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform: (chunk, controller) => {
        sent += chunk.byteLength
        controller.enqueue(chunk)
      },
    }),
  )
  const bundle = await client.runtimes.uploadBundle(packed)
  process.stderr.write(`uploaded ${(sent / 1024 / 1024).toFixed(1)} MiB; deploying ${name} (entrypoint ${entrypoint})\n`)
  return client.runtimes.deploy({ ...request, bundleId: bundle.bundleId })
}

/** `npm ci --omit=dev` in `dir`, its output on stderr. */
async function npmCi(dir: string): Promise<void> {
  process.stderr.write(`installing dependencies: npm ci --omit=dev (in ${dir})\n`)
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn('npm', ['ci', '--omit=dev'], { cwd: dir, stdio: ['ignore', process.stderr, process.stderr] })
    child.on('error', reject)
    child.on('exit', (c) => resolve(c ?? 1))
  })
  if (code !== 0) throw validationError('DIR', `npm ci --omit=dev failed in ${dir} (exit ${code}); fix it or install node_modules yourself`)
}

async function defaultEntrypoint(dir: string): Promise<string> {
  for (const name of defaultEntrypoints) if (await exists(path.join(dir, name))) return name
  const main = await readFile(path.join(dir, 'package.json'), 'utf8').then(
    (text) => (JSON.parse(text) as { main?: unknown }).main,
    () => undefined,
  )
  if (typeof main === 'string' && main !== '') return main.replace(/^\.\//, '')
  throw validationError('--entrypoint', `${dir} has none of ${defaultEntrypoints.join(', ')} and no package.json "main": name the file to run`)
}

function network(flags: Record<string, unknown>): Pick<DeployRuntimeRequest, 'network'> {
  // Absent, the server's default (SANDBOX); --allow alone means VPC.
  if (flags.network === undefined && flags.allow === undefined) return {}
  return { network: networkFlags(flags, 'VPC') }
}

function seconds<K extends string>(flags: Record<string, unknown>, flag: string, key: K): Partial<Record<K, number>> {
  if (flags[flag] === undefined) return {}
  const n = Number(flags[flag])
  if (!Number.isSafeInteger(n) || n < 60 || n > 28_800) throw validationError(`--${flag}`, `must be whole seconds from 60 to 28800, got ${String(flags[flag])}`)
  return { [key]: n } as Partial<Record<K, number>>
}

function oneOf<T extends string>(value: string, allowed: readonly T[], flag: string): T {
  const upper = value.toUpperCase() as T
  if (!allowed.includes(upper)) throw validationError(flag, `must be ${allowed.join(', ')}, got ${value}`)
  return upper
}

const exists = (p: string): Promise<boolean> =>
  stat(p).then(
    () => true,
    () => false,
  )

async function readStdin(): Promise<string> {
  const parts: Buffer[] = []
  for await (const chunk of process.stdin) parts.push(chunk as Buffer)
  return Buffer.concat(parts).toString('utf8')
}
