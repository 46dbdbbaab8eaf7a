/** A server in its own process for restart tests: prints `listening <url>` and serves until killed. */
import { loadServerConfig, startServer } from '@codebox/server'

try {
  const server = await startServer(loadServerConfig({ ...process.env, CODEBOX_PORT: '0', CODEBOX_LOG_LEVEL: 'warn' }))
  process.stdout.write(`listening ${server.url}\n`)
  process.on('SIGTERM', () => void server.close().then(() => process.exit(0)))
} catch (e) {
  process.stderr.write(`${(e as Error).name}: ${(e as Error).message}\n`)
  process.exit(3)
}
