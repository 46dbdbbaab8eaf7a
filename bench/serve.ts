/**
 * A server in its own process for the density and load benches: `listening <url>` on stdout, then
 * serves until SIGTERM (it stops every session it holds, then exits 0) or SIGINT (the same).
 */
import { loadServerConfig, startServer } from '@codebox/server'

try {
  const server = await startServer(loadServerConfig({ ...process.env, CODEBOX_PORT: '0', CODEBOX_LOG_LEVEL: 'warn' }))
  process.stdout.write(`listening ${server.url}\n`)
  const stop = (): void =>
    void server.close().then(
      () => process.exit(0),
      (e: unknown) => {
        process.stderr.write(`could not stop cleanly: ${(e as Error).stack ?? String(e)}\n`)
        process.exit(1)
      },
    )
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
} catch (e) {
  process.stderr.write(`${(e as Error).name}: ${(e as Error).message}\n`)
  process.exit(3)
}
