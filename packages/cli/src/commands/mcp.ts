/**
 * `codebox mcp`: codebox's agent tools as an MCP server on stdio, for MCP clients that start
 * their servers as commands (Claude Code, Claude Desktop, Cursor, VS Code). It talks to the
 * codebox server given by --url / CODEBOX_URL, or the one at http://127.0.0.1:8080; when none is
 * configured or running it starts an embedded server in this process on a free loopback port.
 * stdout carries the protocol only: every log line goes to stderr.
 */
import { validationError } from '@codebox/core'
import { createMcpServer, serveStdio } from '@codebox/mcp'
import { sdkBackend } from '../mcp-backend.ts'
import { CodeboxClient, defaultBaseUrl } from '@codebox/sdk'
import { loadServerConfig, startServer, type RunningServer, type StartServerOptions } from '@codebox/server'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import { clientFlags, type CommandContext } from '../context.ts'

const spec: FlagSpec = {
  ...clientFlags,
  url: { type: 'string', description: 'server URL (default CODEBOX_URL, else a server answering at http://127.0.0.1:8080, else an embedded one)' },
  embedded: { type: 'boolean', description: 'always start an embedded server (state in CODEBOX_STATE_DIR), never use a running one' },
  timeout: { type: 'string', description: "idle seconds before the connection's own session ends (default the server's, 900)" },
  interpreter: { type: 'string', description: "interpreter of the connection's own session (default codebox.v1)" },
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const usage = `${helpText('codebox mcp [--url URL] [--api-key KEY] [--embedded] [--timeout S] [--interpreter ID]', spec, [
  'claude mcp add codebox -- npx codebox mcp              # inside the clone; or the absolute path of packages/cli/bin/codebox',
  'claude mcp add codebox -e CODEBOX_URL=http://10.0.0.5:8080 -e CODEBOX_API_KEY=cbx_... -- /path/to/codebox/packages/cli/bin/codebox mcp   # the name first',
  'npx @modelcontextprotocol/inspector npx codebox mcp    # try the tools in a browser',
  'codebox mcp --embedded                                 # its own server, even when one runs at :8080',
])}
Serves MCP on stdin/stdout until stdin closes or SIGTERM/SIGINT, then stops the connection's own
session (and the embedded server). The tools: execute_code, execute_command, write_files,
read_files, list_files, remove_files, start_task, get_task, stop_task; docs/mcp.md has the rest.
`

export async function run(argv: string[], ctx: CommandContext): Promise<number> {
  const { flags } = parseArgs(argv, spec)
  if (flags.help) {
    process.stdout.write(usage)
    return 0
  }
  const timeout = flags.timeout === undefined ? undefined : Number(flags.timeout)
  if (timeout !== undefined && !(Number.isInteger(timeout) && timeout >= 1 && timeout <= 28_800)) {
    throw validationError('--timeout', `must be whole seconds from 1 to 28800, got ${String(flags.timeout)}`)
  }
  const configuredUrl = (flags.url as string | undefined) || ctx.env.CODEBOX_URL || undefined
  if (flags.embedded && configuredUrl) throw validationError('--embedded', 'starts a server of its own; leave out --url and CODEBOX_URL, or --embedded')
  // Anything that logs with console.log (a dependency, a stray debug line) must not corrupt the protocol.
  console.log = console.info = console.debug = console.error
  const log = (line: string): void => void process.stderr.write(`codebox mcp: ${line}\n`)
  const apiKey = (flags['api-key'] as string | undefined) || ctx.env.CODEBOX_API_KEY || undefined

  let embedded: RunningServer | undefined
  let baseUrl = configuredUrl
  if (!baseUrl && !flags.embedded && (await answersPing(defaultBaseUrl))) baseUrl = defaultBaseUrl
  if (!baseUrl) {
    const level = ctx.env.CODEBOX_LOG_LEVEL || 'warn'
    const config = loadServerConfig({ ...ctx.env, CODEBOX_HOST: '127.0.0.1', CODEBOX_PORT: '0', CODEBOX_LOG_LEVEL: level })
    embedded = await startServer(config, { logger: stderrLogger(level) })
    baseUrl = embedded.url
    log(`started an embedded codebox server at ${baseUrl} (state ${config.engine.stateDir}); it stops when this MCP connection ends`)
  } else if (baseUrl === configuredUrl && !(await answersPing(baseUrl))) {
    log(`no codebox server answers at ${baseUrl} yet; tool calls fail until one does`)
  } else log(`using the codebox server at ${baseUrl}`)

  const mcp = createMcpServer(
    sdkBackend({
      baseUrl,
      apiKey,
      session: {
        name: 'mcp',
        ...(timeout !== undefined ? { timeoutSeconds: timeout } : {}),
        ...(flags.interpreter ? { interpreterId: flags.interpreter as string } : {}),
      },
    }),
  )
  const signalled = new Promise<string>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, () => resolve(signal))
  })
  const { ended } = await serveStdio(mcp.server, { onError: (e) => log(e.message) })
  const reason = await Promise.race([ended, signalled])
  // A shutdown that hangs (a server that does not answer the stop) must not keep the client waiting forever.
  setTimeout(() => {
    log('shutdown took over 10 s; exiting anyway')
    process.exit(70)
  }, 10_000).unref()
  log(`${reason}: stopping the connection's session${embedded ? ' and the embedded server' : ''}`)
  await mcp.close().catch((e: unknown) => log(`closing: ${(e as Error).message}`))
  await embedded?.close()
  process.stdin.destroy()
  // fetch's keep-alive sockets and the like would otherwise hold the process for a few seconds.
  setTimeout(() => process.exit(), 200).unref()
  return 0
}

/** Whether a codebox server answers `GET /ping` at `url` within a second. */
async function answersPing(url: string): Promise<boolean> {
  try {
    const ping = await new CodeboxClient({ baseUrl: url, apiKey: '', maxRetries: 0, timeoutMs: 1000 }).ping()
    return ping.status === 'Healthy' || ping.status === 'HealthyBusy'
  } catch {
    return false
  }
}

type Logger = NonNullable<StartServerOptions['logger']>
const levels: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity }

/** The embedded server's log: JSON lines like pino's, on stderr (its default, stdout, is the protocol here). */
function stderrLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  const threshold = levels[level] ?? levels.info!
  const at =
    (name: string) =>
    (first: unknown, ...rest: unknown[]): void => {
      if (levels[name]! < threshold) return
      const fields = first instanceof Error ? { err: first } : typeof first === 'object' && first !== null ? (first as Record<string, unknown>) : {}
      const msg = typeof first === 'string' ? first : typeof rest[0] === 'string' ? rest[0] : undefined
      const record: Record<string, unknown> = { level: name, time: Date.now(), ...bindings }
      for (const [k, v] of Object.entries(fields)) record[k] = serialize(v)
      if (msg !== undefined) record.msg = msg
      process.stderr.write(`${JSON.stringify(record)}\n`)
    }
  return {
    level,
    trace: at('trace'),
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    fatal: at('fatal'),
    silent: () => {},
    child: (more: Record<string, unknown>) => stderrLogger(level, { ...bindings, ...more }),
  } as unknown as Logger
}

/** A log field as JSON: errors, requests and replies by their useful parts (they are circular). */
function serialize(value: unknown): unknown {
  if (value instanceof Error) return { type: value.name, message: value.message, stack: value.stack, code: (value as { code?: unknown }).code }
  if (typeof value !== 'object' || value === null) return value
  const v = value as { method?: unknown; url?: unknown; statusCode?: unknown }
  if (typeof v.method === 'string' && typeof v.url === 'string') return { method: v.method, url: v.url }
  if (typeof v.statusCode === 'number') return { statusCode: v.statusCode }
  try {
    return JSON.parse(JSON.stringify(value)) as unknown
  } catch {
    return String(value)
  }
}
