/**
 * Helpers for the hostile-sandbox suite (SECURITY.md rule 8): a seeded random source, the frames a
 * hostile executor writes (as steps for hostile-executor.py), a watch on the host process (uncaught
 * errors, peak RSS), and the checks every hostile call must pass: it ends in time, with a result
 * of the right shape or a CodeboxError with a registered code.
 */
import assert from 'node:assert/strict'
import { CodeboxError, errorCodes, toolResultSchema, type ToolResult } from '@codebox/core'
import type { Sandbox, SandboxDriver } from '@codebox/core'
import type { Session } from '@codebox/sandbox'

/** A small seeded generator (mulberry32), so a failing run can be replayed from its seed. */
export function rng(seed: number): { next(): number; int(n: number): number; pick<T>(items: readonly T[]): T } {
  let a = seed >>> 0
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return { next, int: (n) => Math.floor(next() * n), pick: (items) => items[Math.floor(next() * items.length)]! }
}

/** One instruction for hostile-executor.py (see its header for the list). */
export type Step = readonly (string | number)[]
export const J = 0x4a
export const B = 0x42
export const E = 0x45
const b64 = (data: Buffer | string): string => Buffer.from(data).toString('base64')

/** A J frame whose payload is `text`, sent `count` times. */
export const json = (rid: number | string, text: string, count = 1): Step => ['json', rid, text, count]
export const bytesFrame = (rid: number | string, kind: number, payload: Buffer): Step => ['frame', rid, kind, b64(payload)]
export const done = (extra = ''): Step => json('self', `{"ev":"done","exitCode":0,"truncated":false${extra}}`)
export const stdout = (text: string, rid: number | string = 'self'): Step => json(rid, JSON.stringify({ ev: 'stdout', text }))
export const header = (length: number, rid: number | string, kind: number): Step => ['header', length, rid, kind]
export const drip = (data: Buffer, delayMs: number): Step => ['drip', b64(data), delayMs]
/** A J frame for this call written one byte every `delayMs`; only its first `cut` bytes when given. */
export const dripFrame = (text: string, delayMs: number, cut = -1): Step => ['dripframe', 'self', J, b64(text), delayMs, cut]
export const raw = (data: Buffer, count = 1): Step => ['raw', b64(data), count]

/** A whole frame as bytes (for drips and raw writes). */
export function encode(rid: number, kind: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9)
  h.writeUInt32BE(5 + payload.length, 0)
  h.writeUInt32BE(rid >>> 0, 4)
  h.writeUInt8(kind, 8)
  return Buffer.concat([h, payload])
}

const deep = (n: number): string => '['.repeat(n) + ']'.repeat(n)
const invalidUtf8 = Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x28, 0x8c, 0x28, 0xed, 0xa0, 0x80])

/** Payloads of J frames a hostile executor may send: not JSON, not objects, odd values, odd types. */
const hostilePayloads: readonly (() => Buffer)[] = [
  () => Buffer.from('{"ev":"display","data":{"text/html":NaN,"text/plain":"x"}}'),
  () => Buffer.from('{"ev":"stdout","text":Infinity}'),
  () => Buffer.from('{"ev":"stderr","text":-Infinity}'),
  () => Buffer.from(`{"ev":"stdout","text":"a","n":${'9'.repeat(20000)}}`),
  () => Buffer.from('{"ev":"stdout","text":1e400}'),
  () => Buffer.from(`{"ev":"display","data":${deep(100_000)}}`),
  () => Buffer.from(`{"ev":"stdout","text":"${'['.repeat(50)}"}`),
  () => Buffer.concat([Buffer.from('{"ev":"stdout","text":"'), invalidUtf8, Buffer.from('"}')]),
  () => Buffer.concat([Buffer.from('{"ev":"stdout",'), invalidUtf8, Buffer.from(':1}')]),
  () => Buffer.from('{"ev":"stdout","te'),
  () => Buffer.from(''),
  () => Buffer.from('null'),
  () => Buffer.from('42'),
  () => Buffer.from('"done"'),
  () => Buffer.from('[{"ev":"done"}]'),
  () => Buffer.from('{"ev":"stdout","text":12345}'),
  () => Buffer.from('{"ev":"stderr","text":{"a":[1,2]}}'),
  () => Buffer.from('{"ev":"stdout"}'),
  () => Buffer.from('{"ev":"display","data":"not an object"}'),
  () => Buffer.from('{"ev":"display","data":null}'),
  () => Buffer.from('{"ev":"display","data":{"image/png":12345,"text/plain":["a"]}}'),
  () => Buffer.from('{"ev":"display","data":{"image/png":"!!! not base64 ***","text/plain":"x"}}'),
  () => Buffer.from('{"ev":"display","data":{"image/svg+xml":{"x":1},"text/html":false}}'),
  () => Buffer.from('{"ev":"display","data":{"__proto__":{"polluted":"yes"},"text/plain":"p"}}'),
  () => Buffer.from('{"ev":"file","size":"huge","mimeType":7}'),
  () => Buffer.from('{"ev":"ready","pid":"x","runtimes":{"length":1e9}}'),
  () => Buffer.from('{"ev":{"toString":1}}'),
  () => Buffer.from('{"ev":"nonsense","x":1}'),
  () => Buffer.from('{"ev":"stdout","text":"\\ud800 lone surrogate"}'),
]

/** A J frame, a B/E frame or an unknown kind, for this call, another id, or none. */
function randomFrame(r: ReturnType<typeof rng>): Step {
  const rid = r.pick<number | string>(['self', 'self', 'self', 'self+1', 'self+7', 0, 0xffffffff, r.int(2 ** 32)])
  const roll = r.next()
  if (roll < 0.6) return bytesFrame(rid, J, r.pick(hostilePayloads)())
  if (roll < 0.7) return bytesFrame(rid, r.pick([B, E]), Buffer.from(r.pick(['', 'bytes', '\u0000\u00ff'])))
  if (roll < 0.8) return bytesFrame(rid, r.pick([0, 1, 0x58, 0x7f, 0xff]), Buffer.from(r.pick(['{"ev":"done"}', 'zzz', ''])))
  if (roll < 0.9) return json(rid, r.pick(['{"ev":"done","exitCode":0}', '{"ev":"done","exitCode":"x","error":{"traceback":7}}']))
  return stdout(`fuzz ${r.int(1000)}\n`, rid)
}

/** How a random case ends: a proper `done`, or silence, a stop, a closed channel, an exit, a drip. */
function randomEnding(r: ReturnType<typeof rng>): Step[] {
  const roll = r.next()
  if (roll < 0.6) return [done()]
  if (roll < 0.68) return [['stop']]
  if (roll < 0.76) return [['close']]
  if (roll < 0.84) return [['exit', r.int(256)]]
  if (roll < 0.92) return [header(r.pick([0, 1, 4, 0x7fffffff, 0xffffffff]), 'self', J)]
  return [r.next() < 0.5 ? dripFrame('{"ev":"done","exitCode":0}', 5) : drip(Buffer.from([0, 0, 0, 0x18]), 10)]
}

/** The steps of one random case: 2-8 hostile frames and an ending. */
export function randomSteps(r: ReturnType<typeof rng>): Step[] {
  return [...Array.from({ length: 2 + r.int(7) }, () => randomFrame(r)), ...randomEnding(r)]
}

/** Watches the host process: uncaught exceptions and unhandled rejections, and its peak RSS. */
export function watchHost(): { uncaught: unknown[]; peakRss: () => number; baseRss: number; stop(): void } {
  const uncaught: unknown[] = []
  const record = (e: unknown): void => void uncaught.push(e)
  process.on('uncaughtException', record)
  process.on('unhandledRejection', record)
  const baseRss = process.memoryUsage().rss
  let peak = baseRss
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 25)
  timer.unref()
  return {
    uncaught,
    baseRss,
    peakRss: () => Math.max(peak, process.memoryUsage().rss),
    stop: () => {
      clearInterval(timer)
      process.off('uncaughtException', record)
      process.off('unhandledRejection', record)
    },
  }
}

export type Outcome = { result: ToolResult } | { error: CodeboxError }

/**
 * Waits for a hostile call to end within `limitMs`: a result that matches the wire schema (image
 * data in base64) or a CodeboxError with a registered code. Anything else fails, naming `label`.
 */
export async function endsCleanly(label: string, call: Promise<ToolResult>, limitMs: number): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), limitMs)))
  const settled = call.then(
    (result) => ({ result }),
    (error: unknown) => ({ thrown: error }),
  )
  const outcome = await Promise.race([settled, late]).finally(() => clearTimeout(timer))
  assert.notEqual(outcome, 'late', `${label}: the call did not end within ${limitMs} ms`)
  if (outcome === 'late') throw new Error('unreachable')
  if ('thrown' in outcome) {
    const e = outcome.thrown
    assert.ok(e instanceof CodeboxError, `${label}: the call threw something other than a CodeboxError: ${String((e as Error)?.stack ?? e)}`)
    assert.ok(Object.hasOwn(errorCodes, e.code), `${label}: the call threw an unregistered error code ${JSON.stringify(e.code)}`)
    return { error: e }
  }
  const parsed = toolResultSchema.safeParse(outcome.result)
  assert.ok(parsed.success, `${label}: the result breaks the wire schema: ${parsed.success ? '' : parsed.error.message.slice(0, 500)}`)
  for (const block of outcome.result.content) {
    if (block.type === 'image') assert.match(block.data, /^[A-Za-z0-9+/]*={0,2}$/, `${label}: image data is not base64`)
  }
  return { result: outcome.result }
}

/** Stops a session within `limitMs`, failing (naming `label`) if the host cannot end it. */
export async function stopsInTime(label: string, session: Session, limitMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), limitMs)))
  const stopped = session.stop().then(() => 'stopped' as const)
  const r = await Promise.race([stopped, late]).finally(() => clearTimeout(timer))
  assert.equal(r, 'stopped', `${label}: stopping the session took over ${limitMs} ms`)
}

/**
 * A control session answering `print(sum(range(n)))` in a loop until `signal` aborts; resolves
 * with the number of right answers, rejects on the first wrong one or error.
 */
export async function controlLoop(session: Session, seed: number, signal: AbortSignal): Promise<number> {
  const r = rng(seed)
  let answers = 0
  while (!signal.aborted) {
    const n = r.int(1_000_000)
    const result = await session.runCode({ code: `print(sum(range(${n})))`, timeoutMs: 30_000 })
    assert.equal(result.structuredContent.stdout, `${(n * (n - 1)) / 2}\n`, `control session: wrong answer for n=${n} (seed ${seed})`)
    answers++
    // Paced, so the control session probes the host all along without taking a core of its own.
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return answers
}

/** Wraps a driver to remember the sandboxes it creates (to kill stand-ins the host failed to end). */
export function recording(inner: SandboxDriver): { driver: SandboxDriver; created: Sandbox[] } {
  const created: Sandbox[] = []
  const driver: SandboxDriver = {
    name: inner.name,
    check: () => inner.check(),
    create: async (spec, options) => {
      const sandbox = await inner.create(spec, options)
      created.push(sandbox)
      return sandbox
    },
  }
  return { driver, created }
}

/** SIGKILLs the process group of every stand-in that said its pid on stderr (hostile-executor.py). */
export function killStandIns(created: readonly Sandbox[]): void {
  for (const sandbox of created) {
    const pid = Number(/hostile-executor pid (\d+)/.exec(sandbox.diagnostics())?.[1])
    if (!pid) continue
    try {
      process.kill(-pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
}

/** Waits for `promise` at most `ms`; says whether it settled in time (an after-hook must not hang the file). */
export async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)))
  const settled = promise.then(
    () => true,
    () => true,
  )
  return Promise.race([settled, late]).finally(() => clearTimeout(timer))
}
