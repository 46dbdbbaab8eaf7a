/**
 * `node bench/start-steps.ts [--n N] [--preload]`: where the time of a fresh session's start and
 * first cell goes through the SDK (`codeSession()` + `executeCode('print(1)')` + `stop()`),
 * sequentially as one user does it. The server runs in this process (its own state dir, the shared
 * image linked in, loopback) so each step can be timed by wrapping it: the HTTP round trip and the
 * SDK (what the client waited for minus what the service took), the store's reads and writes, the
 * audit entry, the engine's start (pool hand-over, the `session` configure round trip), and the
 * cell in the engine. Lean interpreter by default (`--preload`: the built-in preload). Prints a
 * table; needs root and the sandbox image; stops everything it started.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { codeSession } from '@codebox/sdk'
import { Session } from '@codebox/sandbox'
import { loadServerConfig, startServer } from '@codebox/server'
import { loadAverage, machineFacts } from './host.ts'
import { latencyHeader, latencyRow, sleep, table } from './stats.ts'

const { values: args } = parseArgs({ options: { n: { type: 'string', default: '30' }, preload: { type: 'boolean', default: false } } })
const n = Number(args.n)

const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-steps-'))
fs.symlinkSync(path.join(process.env.CODEBOX_STATE_DIR ?? '/var/lib/codebox', 'images'), path.join(stateDir, 'images'))
const server = await startServer(
  loadServerConfig({
    ...process.env,
    CODEBOX_STATE_DIR: stateDir,
    CODEBOX_PORT: '0',
    CODEBOX_LOG_LEVEL: 'warn',
    ...(args.preload ? {} : { CODEBOX_PRELOAD: '' }),
  }),
)

/** Time spent in each wrapped step during the current iteration, ms. */
let spent = new Map<string, number>()
const add = (step: string, ms: number): void => void spent.set(step, (spent.get(step) ?? 0) + ms)
let phase = 'start'

function wrap<T extends object>(obj: T, method: keyof T & string, step: (phase: string) => string): void {
  const original = (obj[method] as (...a: unknown[]) => unknown).bind(obj)
  ;(obj as Record<string, unknown>)[method] = (...a: unknown[]) => {
    const t = performance.now()
    const r = original(...a)
    if (r instanceof Promise) return r.finally(() => add(step(phase), performance.now() - t))
    add(step(phase), performance.now() - t)
    return r
  }
}
/** Wraps an async generator method: the time from the call until it is done. */
function wrapGen<T extends object>(obj: T, method: keyof T & string, step: string): void {
  const original = obj[method] as (...a: unknown[]) => AsyncGenerator<unknown, unknown>
  ;(obj as Record<string, unknown>)[method] = async function* (this: unknown, ...a: unknown[]) {
    const t = performance.now()
    try {
      return yield* original.apply(this, a)
    } finally {
      add(step, performance.now() - t)
    }
  }
}

const { store, engine, sessions } = server
const storeSteps: [object, string, string][] = [
  [store.tenants, 'ensure', 'store: tenant'],
  [store.sessions, 'countActive', 'store: count sessions'],
  [store.interpreters, 'get', 'store: interpreter'],
  [store.sessions, 'insert', 'store: insert session'],
  [store.sessions, 'get', 'store: read session'],
  [store.sessions, 'touch', 'store: touch session'],
  [store.sessions, 'markTerminated', 'store: mark terminated'],
  [store.audit, 'record', 'audit entry'],
]
for (const [obj, m, step] of storeSteps)
  if (typeof (obj as Record<string, unknown>)[m] === 'function') wrap(obj as Record<string, unknown>, m, (p) => `${p}: ${step}`)
wrap(sessions, 'start', () => 'start: service (total)')
wrap(sessions, 'stop', () => 'stop: service (total)')
wrap(engine, 'start', () => 'start: engine.start (total)')
const pool = (engine as unknown as { pool: { take: (...a: unknown[]) => Promise<{ client: Record<string, unknown> } | undefined> } }).pool
wrap(pool, 'take', () => 'start: pool hand-over')
// The executor client is an object per sandbox: wrap the configure call of each one handed over.
const take = pool.take.bind(pool)
pool.take = async (...a: unknown[]) => {
  const warm = await take(...a)
  if (warm) wrap(warm.client, 'configureSession', () => 'start: session configure round trip')
  else add('start: pool empty (cold boot)', 1)
  return warm
}
wrapGen(sessions, 'invoke', 'cell: service (total)')
wrapGen(Session.prototype, 'executeCode', 'cell: engine executeCode')

const rows: Map<string, number[]> = new Map()
const facts = machineFacts()
try {
  for (let i = -2; i < n; i++) {
    spent = new Map()
    phase = 'start'
    const t0 = performance.now()
    const ci = await codeSession({ baseUrl: server.url })
    const t1 = performance.now()
    phase = 'cell'
    const r = await ci.executeCode({ code: 'print(1)', language: 'python' })
    const t2 = performance.now()
    if (r.structuredContent.stdout !== '1\n') throw new Error(`print(1) answered ${JSON.stringify(r.structuredContent)}`)
    phase = 'stop'
    await ci.stop()
    const t3 = performance.now()
    if (i < 0) continue // warm-up: the first iterations include the pool's first boots
    const s = spent
    const record = (k: string, v: number): void => void rows.set(k, [...(rows.get(k) ?? []), v])
    record('SDK start (codeSession)', t1 - t0)
    record('SDK first cell (executeCode print(1))', t2 - t1)
    record('SDK start + first cell', t2 - t0)
    record('SDK stop', t3 - t2)
    record('start: HTTP + SDK (client minus service)', t1 - t0 - (s.get('start: service (total)') ?? 0))
    record('cell: HTTP + SDK (client minus service)', t2 - t1 - (s.get('cell: service (total)') ?? 0))
    for (const [k, v] of s) record(k, v)
    await sleep(1500) // the pool's refill (CODEBOX_POOL_REFILL_DELAY_MS, 1 s) lands before the next start
  }
} finally {
  await server.close()
  fs.rmSync(stateDir, { recursive: true, force: true })
}
const order = [...rows.keys()].sort((a, b) => (a.startsWith('SDK') === b.startsWith('SDK') ? 0 : a.startsWith('SDK') ? -1 : 1))
process.stdout.write(
  [
    `### Start + first cell, step by step (bench/start-steps.ts${args.preload ? ' --preload' : ''})`,
    '',
    `${facts.date}, ${facts.cores} cores, load average ${facts.loadAverage} → ${loadAverage()} (shared machine); ${n} sequential sessions, ${args.preload ? 'default preload' : 'lean'}, pooled (1.5 s between sessions).`,
    '',
    table(
      latencyHeader,
      order.map((k) => latencyRow(k, rows.get(k)!)),
    ),
    '',
  ].join('\n'),
)
