/**
 * A server in its own process for restart tests: prints `listening <url>` and serves until killed.
 * With `--faults`, it then throws from a timer and leaves a promise rejection unhandled, and
 * prints `faults raised` once both went off (the server must still be serving). With
 * `--fake-shared <dir>`, the driver `fake-shared` is the fake driver in shared mode on `dir` (a
 * replica of the tests of replicas).
 */
import { drivers, FakeDriver } from '@codebox/sandbox'
import { loadServerConfig, startServer } from '@codebox/server'

const sharedAt = process.argv.indexOf('--fake-shared')
if (sharedAt >= 0) {
  const sharedDir = process.argv[sharedAt + 1]
  if (!sharedDir) throw new Error('--fake-shared takes a directory')
  drivers.register({
    name: 'fake-shared',
    description: 'the fake driver in shared mode (tests of replicas)',
    create: async () => new FakeDriver({ sharedDir }),
  })
}

try {
  const server = await startServer(loadServerConfig({ ...process.env, CODEBOX_PORT: '0', CODEBOX_LOG_LEVEL: 'warn' }))
  process.stdout.write(`listening ${server.url}\n`)
  process.on('SIGTERM', () => void server.close().then(() => process.exit(0)))
  if (process.argv.includes('--faults')) {
    setTimeout(() => {
      throw new Error('deliberate fault from a timer')
    }, 10)
    setTimeout(() => void Promise.reject(new Error('deliberate unhandled rejection')), 20)
    setTimeout(() => process.stdout.write('faults raised\n'), 200)
  }
} catch (e) {
  process.stderr.write(`${(e as Error).name}: ${(e as Error).message}\n`)
  process.exit(3)
}
