/**
 * Runs an interpreter's preload in a new sandbox's Python kernel before the sandbox is handed
 * over, and reports what it imported. A preload never fails a sandbox: a module missing from the
 * image, an import that raises or a kernel that dies is reported and the session starts anyway.
 */
import type { ExecutorClient } from './executor-client.ts'

/** What a session's kernel preloaded before the session was handed over. */
export interface PreloadReport {
  /** The modules asked for. */
  modules: readonly string[]
  /** Those now in the kernel's sys.modules. */
  loaded: readonly string[]
  /** Those that failed, each with its error (`ModuleNotFoundError: No module named 'x'`). */
  failed: readonly { module: string; error: string }[]
  /** How long the imports and the warm-up plot took in the kernel, ms. */
  durationMs: number
  /** What the imports printed on stderr (warnings), at most 4 KiB. */
  stderr: string
}

const maxStderr = 4096

/** Imports `modules` in the client's Python kernel; resolves with the report, never rejects. */
export async function runPreload(client: ExecutorClient, modules: readonly string[], timeoutMs: number): Promise<PreloadReport> {
  const report = { modules, loaded: [] as string[], failed: [] as { module: string; error: string }[], durationMs: 0, stderr: '' }
  const everything = (error: string): PreloadReport => ({ ...report, failed: modules.map((module) => ({ module, error })) })
  try {
    const it = client.request('preload', { modules, timeoutMs }, { deadlineMs: timeoutMs })
    let step = await it.next()
    while (!step.done) {
      const m = step.value
      if (m.kind === 'event' && m.event.ev === 'stderr' && typeof m.event.text === 'string' && report.stderr.length < maxStderr) {
        report.stderr = (report.stderr + m.event.text).slice(0, maxStderr)
      }
      step = await it.next()
    }
    const done = step.value
    const result = done.preload as { loaded?: unknown; failed?: unknown; durationMs?: unknown } | undefined
    if (!result || typeof result !== 'object') {
      const why = done.timedOut ? `did not finish within ${timeoutMs} ms` : `the kernel ended (exit status ${String(done.exitCode)})`
      return everything(`preload ${why}; the kernel starts afresh, without it, on the first cell`)
    }
    const names = new Set(modules)
    return {
      ...report,
      loaded: Array.isArray(result.loaded) ? result.loaded.filter((m): m is string => typeof m === 'string' && names.has(m)) : [],
      failed: Array.isArray(result.failed)
        ? result.failed
            .filter((f): f is { module: string; error: string } => typeof f?.module === 'string' && typeof f?.error === 'string')
            .map((f) => ({ module: f.module.slice(0, 200), error: f.error.slice(0, 2048) }))
        : [],
      durationMs: typeof result.durationMs === 'number' ? result.durationMs : 0,
    }
  } catch (e) {
    return everything(`preload failed: ${(e as Error).message}`)
  }
}
