/**
 * Runs a codebox server: opens the store, starts the engine with the configured driver,
 * re-adopts the sessions a previous run left (their sandboxes outlive it: kernel state, files and
 * tasks intact; those that cannot be re-adopted are marked TERMINATED, `server-restart`, with the
 * reason logged), and listens. One server per SQLite store, enforced by a lock file; any number
 * of replicas share a PostgreSQL store, each re-adopting only the sessions it started itself
 * (CODEBOX_REPLICA_ID), never another replica's.
 */
import fs from 'node:fs'
import path from 'node:path'
import type { FastifyBaseLogger } from 'fastify'
import { validationError, CodeboxError } from '@codebox/core'
import { createEngine, type SessionManager } from '@codebox/sandbox'
import { buildApp, type App } from './app.ts'
import { isLoopback, type ServerConfig } from './config.ts'
import { openStore, type OpenStore } from './store/index.ts'
import { ModelGateway } from './services/gateway.ts'
import type { SessionService } from './services/sessions.ts'

export interface RunningServer extends App {
  /** Where it listens, e.g. http://127.0.0.1:8080. */
  url: string
  store: OpenStore
  engine: SessionManager
  /** Sessions a previous run left READY that could not be re-adopted, now TERMINATED. */
  reconciled: string[]
  /** Sessions a previous run left READY that this server serves again. */
  adopted: string[]
  /**
   * Stops listening and closes the store. Every session is stopped (reason `shutdown`), or, with
   * `detach`, let go to run on for the next server to re-adopt (a restart or an upgrade).
   */
  close(options?: { detach?: boolean }): Promise<void>
}

export interface StartServerOptions {
  logger?: FastifyBaseLogger
  version?: string
  /**
   * Default true: while the server runs, an uncaught exception or unhandled rejection anywhere in
   * the process is logged and the server keeps serving, instead of the process exiting and
   * ending every tenant's sessions with it.
   */
  lastResort?: boolean
}

export async function startServer(config: ServerConfig, options: StartServerOptions = {}): Promise<RunningServer> {
  const loopbackOnly = isLoopback(config.host)
  // One server per SQLite file; replicas sharing PostgreSQL take no lock.
  const unlock = config.store.kind === 'sqlite' ? lockStateDir(path.dirname(config.store.path)) : () => {}
  let store: OpenStore | undefined
  let engine: SessionManager | undefined
  // Ends of sessions being recorded: closing waits for them before it closes the store.
  const ending = new Set<Promise<unknown>>()
  try {
    store = await openStore(config.store)
    const opened = store
    if (!loopbackOnly && !(await store.keys.anyCreated())) {
      throw validationError(
        'host',
        `refusing to listen on ${config.host} without API keys: anyone who can reach it could run code. Create a key first (codebox keys create --tenant <name>) or listen on 127.0.0.1`,
      )
    }
    let app: App | undefined
    // Before the engine: its egress listeners hand model-gateway requests to it.
    const gateway = new ModelGateway({ config: config.gateway })
    engine = await createEngine(config.engine, {
      gateway: gateway.handler,
      onSessionEnd: (s) => {
        if (!app) return
        const recorded = app.sessions
          .onSessionEnd(s)
          .catch((err: unknown) => app?.app.log.error({ err, sessionId: s.id }, 'could not record the end of a session'))
          .finally(() => ending.delete(recorded))
        ending.add(recorded)
      },
      onEgressDenial: (d) => app?.app.log.info({ egress: d }, 'egress refused'),
      // A session other replicas may serve too (a shared driver's): its last call anywhere, its deadline, or its end.
      recordedActivity: async (sessionId) => {
        const r = await opened.sessions.owner(sessionId)
        return r && { ended: r.status !== 'READY', lastActivityAt: Date.parse(r.lastUpdatedAt), maxLifetimeMs: r.limits.maxLifetimeMs }
      },
      sandboxesDir: path.join(config.store.kind === 'sqlite' ? path.dirname(config.store.path) : config.engine.stateDir, 'sandboxes'),
    })
    app = await buildApp({ config, engine, store, gateway, loopbackOnly, logger: options.logger, version: options.version })
    const { adopted, reconciled } = await readopt(app, app.app.log)
    await app.app.listen({ host: config.host, port: config.port })
    const address = app.app.server.address()
    const port = typeof address === 'object' && address ? address.port : config.port
    const host = config.host.includes(':') ? `[${config.host}]` : config.host
    const s = store
    const e = engine
    const removeLastResort = options.lastResort === false ? () => {} : installLastResort(app.app.log)
    let closing: Promise<void> | undefined
    return {
      ...app,
      url: `http://${host}:${port}`,
      store: s,
      engine: e,
      reconciled,
      adopted,
      close: (closeOptions = {}) =>
        (closing ??= (async () => {
          // The sandboxes' teardown waits on unreferenced timers only (they are no children of this
          // process): without a referenced handle, the process would exit mid-close once the HTTP
          // server is closed, leaving sandbox records and cgroups behind.
          const hold = setInterval(() => {}, 1000)
          try {
            await app.app.close()
            await e.close({ detach: closeOptions.detach === true })
            await Promise.allSettled([...ending])
            gateway.close()
            await s.close()
            unlock()
            removeLastResort()
          } finally {
            clearInterval(hold)
          }
        })()),
    }
  } catch (err) {
    await engine?.close()
    await store?.close()
    unlock()
    throw err
  }
}

/**
 * Serves again the sessions of the previous run (SessionService.adoptPrevious) and hosted agents'
 * runtime sessions among them (App.restoreHosted), and logs what could not be.
 */
async function readopt(app: App, log: FastifyBaseLogger): Promise<{ adopted: string[]; reconciled: string[] }> {
  const outcome = await app.sessions.adoptPrevious()
  for (const { sessionId, reason } of outcome.failed)
    log.info({ sessionId, reason }, 'a session of the previous run could not be re-adopted; marked TERMINATED (server-restart)')
  if (outcome.adopted.length) log.info({ sessions: outcome.adopted.length }, 'sessions of the previous run re-adopted')
  if (outcome.hosted.length) {
    const hosted = await app.restoreHosted(outcome.hosted)
    for (const { key, reason } of hosted.failed)
      log.info(
        { runtimeId: key.runtimeId, runtimeSessionId: key.runtimeSessionId, reason },
        'a runtime session of the previous run could not be served again; ended',
      )
    if (hosted.restored.length) log.info({ runtimeSessions: hosted.restored.length }, 'runtime sessions of the previous run served again')
  }
  if (outcome.removed) log.info({ sandboxes: outcome.removed }, 'sandboxes of the previous run that no session claimed were removed')
  return { adopted: outcome.adopted, reconciled: outcome.failed.map((f) => f.sessionId) }
}

/**
 * The last-resort handlers: a fault that escaped every other handler (a bug, or a sandbox value
 * that reached a listener unguarded) is logged with its stack, and the server keeps serving.
 * Returns the function that removes them.
 */
function installLastResort(log: FastifyBaseLogger): () => void {
  const onException = (err: Error, origin: string): void => log.error({ err, origin }, 'uncaught exception; the server keeps serving')
  const onRejection = (reason: unknown): void => log.error({ err: reason }, 'unhandled promise rejection; the server keeps serving')
  process.on('uncaughtException', onException)
  process.on('unhandledRejection', onRejection)
  return () => {
    process.off('uncaughtException', onException)
    process.off('unhandledRejection', onRejection)
  }
}

/** Takes `<stateDir>/server.pid`; a second server on the same state would mark the first's sessions ended. */
function lockStateDir(dir: string): () => void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  const file = path.join(dir, 'server.pid')
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx', mode: 0o600 })
      return () => {
        try {
          if (fs.readFileSync(file, 'utf8') === String(process.pid)) fs.unlinkSync(file)
        } catch {
          // Already gone.
        }
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
      const pid = Number(fs.readFileSync(file, 'utf8'))
      if (pid && pid !== process.pid && alive(pid)) {
        throw new CodeboxError('Conflict', `another codebox server (pid ${pid}) is using ${dir}; stop it, or give this one its own CODEBOX_STATE_DIR`)
      }
      fs.rmSync(file, { force: true }) // left by a server that died
    }
  }
  throw new CodeboxError('Conflict', `could not take the lock ${file}`)
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}
