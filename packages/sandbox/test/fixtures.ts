/**
 * Test fixtures: an engine on the real bwrap driver and image (or the reason it cannot run
 * here), and sessions that are always stopped, naming the session when a test fails.
 */
import assert from 'node:assert/strict'
import { after, before, type TestContext } from 'node:test'
import { defaultLimits, type Sandbox, type SandboxDriver, type SessionLimits, type ToolResult } from '@codebox/core'
import {
  BwrapDriver,
  FakeDriver,
  SessionManager,
  defaultRecipe,
  findImage,
  loadEngineConfig,
  type JsRuntime,
  type KernelLanguage,
  type Session,
} from '@codebox/sandbox'
import { detectCgroups } from '../src/drivers/bwrap/cgroups.ts'

/** Why the bwrap driver cannot run here, or undefined when it can. */
export async function bwrapUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'the bwrap driver needs root (per-session uids and cgroups)'
  const config = loadEngineConfig(process.env)
  const image = await findImage(config.stateDir, defaultRecipe({ mirror: config.debianMirror }))
  if (!image) return `no sandbox image in ${config.stateDir}; run \`codebox image build\` (npm test does)`
  try {
    await new BwrapDriver({ imagePath: image.path }).check()
  } catch (e) {
    return (e as Error).message
  }
  return undefined
}

/** The real bwrap driver on the built image; check bwrapUnavailable() first. */
export async function bwrapDriver(): Promise<BwrapDriver> {
  const config = loadEngineConfig(process.env)
  const image = await findImage(config.stateDir, defaultRecipe({ mirror: config.debianMirror }))
  if (!image) throw new Error('no sandbox image; run `codebox image build`')
  return new BwrapDriver({ imagePath: image.path })
}

// The contract suite's recording driver, shared with the tests here.
export { recordingDriver, type RecordedSandbox } from '../src/testing/contract.ts'

/** Where the host keeps a bwrap sandbox's cgroups (v1: one directory per controller). */
export function sandboxCgroups(sandboxId: string): { dirs: string[]; procs: string; pidsMax: string; memoryMax: string } {
  if (detectCgroups() === 'v2') {
    const dir = `/sys/fs/cgroup/codebox/${sandboxId}`
    return { dirs: [dir], procs: `${dir}/cgroup.procs`, pidsMax: `${dir}/pids.max`, memoryMax: `${dir}/memory.max` }
  }
  const dir = (controller: string): string => `/sys/fs/cgroup/${controller}/codebox/${sandboxId}`
  return {
    dirs: ['memory', 'pids', 'cpu'].map(dir),
    procs: `${dir('pids')}/cgroup.procs`,
    pidsMax: `${dir('pids')}/pids.max`,
    memoryMax: `${dir('memory')}/memory.limit_in_bytes`,
  }
}

/** A SessionManager on the real bwrap driver; closed when the test (or suite) ends. */
export async function bwrapManager(options: { poolSize?: number; defaults?: Partial<SessionLimits> } = {}): Promise<SessionManager> {
  return new SessionManager({ driver: await bwrapDriver(), poolSize: options.poolSize ?? 0, defaults: { ...defaultLimits, ...options.defaults } })
}

/** A bwrap manager and one session that the tests of a suite share. */
export interface SharedSession {
  manager: SessionManager
  session: Session
}

/**
 * For a `describe` block on the bwrap driver: starts a manager and a session before its first
 * test, and closes the manager (stopping every session it started) after its last. The fields
 * are set once the suite's `before` hook has run.
 */
export function sharedBwrapSession(): SharedSession {
  return sharedSession(() => bwrapManager())
}

/**
 * The same for any driver: `makeManager` makes the manager in the suite's `before` hook, and
 * `onStart` (if given) is handed the session and manager once they exist.
 */
export function sharedSession(makeManager: () => Promise<SessionManager>, onStart?: (session: Session, manager: SessionManager) => void): SharedSession {
  const shared = {} as SharedSession
  before(async () => {
    shared.manager = await makeManager()
    shared.session = await shared.manager.start()
    onStart?.(shared.session, shared.manager)
  })
  after(async () => {
    await shared.manager?.close()
  })
  return shared
}

export function fakeManager(options: { poolSize?: number } = {}): SessionManager {
  return new SessionManager({ driver: new FakeDriver(), poolSize: options.poolSize ?? 0 })
}

/**
 * Runs `fn` with a new session that is always stopped afterwards; a failure names the session.
 */
export async function withSession<T>(
  manager: SessionManager,
  fn: (s: Session) => Promise<T>,
  limits?: Partial<SessionLimits>,
  preload?: readonly string[],
): Promise<T> {
  const session = await manager.start({ limits, ...(preload ? { preload } : {}) })
  try {
    return await fn(session)
  } catch (e) {
    if (e instanceof Error) e.message = `[session ${session.id}] ${e.message}`
    throw e
  } finally {
    await session.stop()
  }
}

/** Skips the test (with the reason) when the bwrap driver is unavailable; for `before` hooks. */
export async function skipUnlessBwrap(t: TestContext): Promise<boolean> {
  const why = await bwrapUnavailable()
  if (why) t.skip(why)
  return why === undefined
}

/** Runs Python in a session and returns stdout; fails the test with stderr if the cell failed. */
export async function py(session: Session, code: string, timeoutMs?: number): Promise<string> {
  const r = await session.runCode({ code, language: 'python', timeoutMs })
  if (r.isError) throw new Error(`cell failed: ${r.structuredContent.stderr}`)
  return r.structuredContent.stdout
}

export interface Cancelled {
  result: ToolResult
  /** From the cancel to the result, ms. */
  afterCancelMs: number
}

/**
 * Runs a cell and cancels it (its AbortSignal) once its stdout shows `GO`, so that the cell is
 * surely running; a cell that never shows it fails the test after 60 s.
 */
export async function cancelRunning(session: Session, code: string, options: { language?: KernelLanguage; runtime?: JsRuntime } = {}): Promise<Cancelled> {
  const abort = new AbortController()
  const it = session.executeCode({ code, language: options.language ?? 'python', runtime: options.runtime, signal: abort.signal, timeoutMs: 60_000 })
  let stdout = ''
  let cancelledAt = 0
  for (;;) {
    const next = await it.next()
    if (next.done) {
      assert.ok(cancelledAt > 0, `the cell ended before it was cancelled: ${JSON.stringify(next.value.structuredContent)}`)
      return { result: next.value, afterCancelMs: performance.now() - cancelledAt }
    }
    if (next.value.type === 'stdout') stdout += next.value.text
    if (cancelledAt === 0 && stdout.includes('GO')) {
      cancelledAt = performance.now()
      abort.abort()
    }
  }
}

/** Asserts the cancelled cell was interrupted and its kernel kept, and that it ended promptly. */
