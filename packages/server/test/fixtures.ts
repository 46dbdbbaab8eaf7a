/**
 * Server test fixtures: the real HTTP app on loopback with an in-memory store and the fake
 * driver (real executor, no isolation), closed when the test ends; and small fetch helpers.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { TestContext } from 'node:test'
import type { FastifyBaseLogger } from 'fastify'
import { FakeDriver, SessionManager } from '@codebox/sandbox'
import { buildApp, loadServerConfig, startServer, Store, type App, type OpenStore, type RunningServer, type ServerConfig } from '@codebox/server'

export interface TestServer extends App {
  url: string
  store: OpenStore
  engine: SessionManager
  /** fetch against the server; `json` bodies are sent as JSON. */
  call: (
    method: string,
    urlPath: string,
    options?: { json?: unknown; body?: RequestInit['body']; headers?: Record<string, string>; key?: string },
  ) => Promise<Response>
  close: () => Promise<void>
}

export async function testServer(
  t: TestContext | undefined,
  options: {
    env?: Record<string, string>
    loopbackOnly?: boolean
    poolSize?: number
    logs?: LogRecord[]
    /** A store to serve from (a replica's; the caller closes it). Default a new in-memory SQLite store, closed with the server. */
    store?: OpenStore
    /** The gateway relay route's key (AppOptions.gatewayRelayKey); default none. */
    gatewayRelayKey?: Buffer
  } = {},
): Promise<TestServer> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-server-test-'))
  const config = loadServerConfig({ CODEBOX_DRIVER: 'fake', CODEBOX_STATE_DIR: stateDir, CODEBOX_LOG_LEVEL: 'silent', ...options.env })
  const store = options.store ?? Store.open(':memory:')
  let app: App | undefined
  // Ends of sessions being recorded: closing waits for them (a PostgreSQL store records asynchronously).
  const ending = new Set<Promise<unknown>>()
  const onSessionEnd = (s: Parameters<App['sessions']['onSessionEnd']>[0]): void => {
    const recorded = app?.sessions.onSessionEnd(s)
    if (!recorded) return
    ending.add(recorded)
    // A failure still surfaces (an unhandled rejection fails the test).
    void recorded.finally(() => ending.delete(recorded))
  }
  const engine = new SessionManager({ driver: new FakeDriver(), poolSize: options.poolSize ?? 0, onSessionEnd })
  const logger = options.logs ? captureLogger(options.logs) : undefined
  app = await buildApp({
    config,
    engine,
    store,
    loopbackOnly: options.loopbackOnly ?? true,
    ...(logger ? { logger } : {}),
    ...(options.gatewayRelayKey ? { gatewayRelayKey: options.gatewayRelayKey } : {}),
  })
  await app.app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.app.server.address() as { port: number }
  const url = `http://127.0.0.1:${address.port}`
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await app.app.close()
    await engine.close()
    await Promise.allSettled([...ending])
    if (!options.store) await store.close()
    fs.rmSync(stateDir, { recursive: true, force: true })
  }
  t?.after(close)
  const call: TestServer['call'] = (method, urlPath, o = {}) =>
    fetch(url + urlPath, {
      method,
      headers: {
        ...(o.json !== undefined ? { 'content-type': 'application/json' } : {}),
        ...(o.key ? { authorization: `Bearer ${o.key}` } : {}),
        ...o.headers,
      },
      body: o.json !== undefined ? JSON.stringify(o.json) : o.body,
    })
  return { ...app, url, store, engine, call, close }
}

/** One log line the server wrote: its level name, the message and the merged bindings and object. */
export interface LogRecord {
  level: string
  msg: string
  [key: string]: unknown
}

/** A Fastify logger (pino's interface) that appends every record at debug level and up to `into`. */
export function captureLogger(into: LogRecord[], bindings: Record<string, unknown> = {}): FastifyBaseLogger {
  const at =
    (level: string) =>
    (obj?: unknown, msg?: unknown): void => {
      const fields: Record<string, unknown> = {}
      // Only what a test reads: primitives, and an error's code and message (requests and replies are circular).
      for (const [k, v] of Object.entries(typeof obj === 'object' && obj !== null ? obj : {})) {
        if (v instanceof Error) fields[k] = { code: (v as { code?: unknown }).code, message: v.message }
        else if (v === null || typeof v !== 'object') fields[k] = v
      }
      const text = typeof obj === 'string' ? obj : typeof msg === 'string' ? msg : ''
      into.push({ ...bindings, ...fields, level, msg: text })
    }
  return {
    level: 'debug',
    fatal: at('fatal'),
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    trace: () => {},
    silent: () => {},
    child: (more: Record<string, unknown>) => captureLogger(into, { ...bindings, ...more }),
  } as unknown as FastifyBaseLogger
}

/** Resolves once `pred` holds (checked every 20 ms); fails naming `what` after `timeoutMs`. Not a fixed sleep. */
export async function waitUntil(pred: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** The JSON body of a response, after checking its status (the body is in the failure message). */
export async function expectJson<T = Record<string, unknown>>(res: Response | Promise<Response>, status: number): Promise<T> {
  const r = await res
  const text = await r.text()
  if (r.status !== status) throw new Error(`expected HTTP ${status}, got ${r.status}: ${text.slice(0, 500)}`)
  return (text ? JSON.parse(text) : undefined) as T
}

/** Expects the codebox error shape with this code and status; returns the error object. */
export async function expectError(
  res: Response | Promise<Response>,
  status: number,
  code: string,
): Promise<{ code: string; message: string; details: Record<string, unknown>; requestId: string }> {
  const body = await expectJson<{ error: { code: string; message: string; details: Record<string, unknown>; requestId: string } }>(res, status)
  if (body?.error?.code !== code) throw new Error(`expected error ${code}, got ${JSON.stringify(body)}`)
  if (typeof body.error.message !== 'string' || !body.error.message || typeof body.error.requestId !== 'string')
    throw new Error(`malformed error ${JSON.stringify(body)}`)
  return body.error
}

export async function startSession(s: TestServer, body: Record<string, unknown> = {}, key?: string): Promise<string> {
  const info = await expectJson<{ sessionId: string }>(s.call('POST', '/v1/sessions', { json: body, key }), 201)
  return info.sessionId
}

export async function invoke(s: TestServer, sessionId: string, name: string, args: Record<string, unknown>, key?: string): Promise<Response> {
  return s.call('POST', `/v1/sessions/${sessionId}/invoke`, { json: { name, arguments: args }, key })
}

/** A new state dir `parent/name` that shares the built sandbox image, so a server there has its own store and lock. */
export async function imageStateDir(parent: string, name = 'state'): Promise<string> {
  const dir = path.join(parent, name)
  await fs.promises.mkdir(dir)
  await fs.promises.symlink(path.join(process.env.CODEBOX_STATE_DIR ?? '/var/lib/codebox', 'images'), path.join(dir, 'images'))
  return dir
}

/**
 * The configuration of a real codebox server (bwrap driver, as `codebox serve` loads it) on a free
 * loopback port, with a state dir of its own under `parent`, quiet logs and a warm pool of one;
 * `env` adds settings. Starting it again later opens the same store.
 */
export async function realServerConfig(parent: string, env: Record<string, string> = {}): Promise<ServerConfig> {
  const stateDir = await imageStateDir(parent)
  return loadServerConfig({ ...process.env, CODEBOX_STATE_DIR: stateDir, CODEBOX_LOG_LEVEL: 'silent', CODEBOX_POOL_SIZE: '1', CODEBOX_PORT: '0', ...env })
}

/** A real codebox server started from `realServerConfig(parent, env)`. */
export async function realServer(parent: string, env: Record<string, string> = {}): Promise<RunningServer> {
  return startServer(await realServerConfig(parent, env))
}
