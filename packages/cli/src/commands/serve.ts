/** `codebox serve`: runs the server (API, reference page, metrics) until SIGINT/SIGTERM. */
import fs from 'node:fs'
import path from 'node:path'
import { validationError } from '@codebox/core'
import { registerKubernetesDriver } from '@codebox/driver-kubernetes'
import { drivers, type DriverRegistry } from '@codebox/sandbox'
import { describeStore, loadServerConfig, readSealingKey, sealingKeyFromEnv, startServer } from '@codebox/server'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import type { CommandContext } from '../context.ts'

const spec: FlagSpec = {
  host: { type: 'string', description: 'address to listen on (default CODEBOX_HOST or 127.0.0.1)' },
  port: { short: 'p', type: 'string', description: 'port (default CODEBOX_PORT or 8080; 0 picks one)' },
  'stop-sessions': {
    type: 'boolean',
    description: 'on exit, end every session instead of leaving them for the next server to re-adopt',
  },
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const usage = helpText('codebox serve [--host ADDR] [--port N] [--stop-sessions]', spec, [
  'codebox serve',
  'CODEBOX_LOG_LEVEL=warn codebox serve --port 9000',
  'codebox keys create --tenant ops && codebox serve --host 0.0.0.0   # beyond loopback only with API keys',
])

/**
 * The drivers of other packages, registered here, at the composition root, so that
 * CODEBOX_DRIVER (or an interpreter) can name them; the server itself imports none of them.
 */
export function registerDrivers(env: Readonly<Record<string, string | undefined>>, registry: DriverRegistry = drivers): void {
  registerKubernetesDriver(registry, {
    env,
    sealingKey: () => {
      const source = sealingKeyFromEnv(env)
      if (!source) {
        throw validationError(
          'CODEBOX_SEALING_KEY',
          'is required with the kubernetes driver: the executor tokens of the sandbox pods derive from it, so every replica needs the same key (CODEBOX_SEALING_KEY, base64 of 32 bytes, or CODEBOX_SEALING_KEY_FILE; with a PostgreSQL store, the store’s key)',
        )
      }
      return readSealingKey(source)
    },
  })
}

export async function run(argv: string[], ctx: CommandContext): Promise<number> {
  const { flags } = parseArgs(argv, spec)
  if (flags.help) {
    process.stdout.write(usage)
    return 0
  }
  const port = flags.port === undefined ? undefined : Number(flags.port)
  const config = loadServerConfig(ctx.env, { host: flags.host as string | undefined, port: port === undefined || Number.isNaN(port) ? undefined : port })
  if (flags.port !== undefined && (!Number.isInteger(port) || port! < 0 || port! > 65535)) {
    process.stderr.write(`codebox: --port must be a whole number from 0 to 65535, got ${String(flags.port)}\n`)
    return 64
  }
  registerDrivers(ctx.env)
  const server = await startServer(config)
  process.stderr.write(
    `\ncodebox is serving on ${server.url}\n` +
      `  web IDE ${fs.existsSync(path.join(config.webDir, 'index.html')) ? `${server.url}/` : `not built (npm run build -w packages/web, or npm start)`}\n` +
      `  API reference ${server.url}/docs · OpenAPI ${server.url}/openapi.json · health ${server.url}/ping\n` +
      `  state ${config.engine.stateDir} · store ${describeStore(config.store)} · driver ${config.engine.driver} · ${(await server.store.keys.anyCreated()) ? 'API keys required' : 'open to loopback (no API keys yet)'}\n` +
      (server.adopted.length ? `  ${server.adopted.length} session(s) of the previous run served again\n` : '') +
      (server.reconciled.length
        ? `  ${server.reconciled.length} session(s) of the previous run could not be re-adopted: marked TERMINATED (server-restart)\n`
        : '') +
      `  try: npx codebox exec -l python 'print(6 * 7)'\n\n`,
  )
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      const detach = flags['stop-sessions'] !== true
      process.stderr.write(
        detach
          ? `\ncodebox: ${signal}, shutting down; sessions live on for the next server (each ends at its idle timeout if none comes; --stop-sessions ends them)\n`
          : `\ncodebox: ${signal}, stopping every session and shutting down\n`,
      )
      void server.close({ detach }).then(resolve)
    }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
  return 0
}
