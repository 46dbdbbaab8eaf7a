/** Turns what the executor reported for one call into the one ToolResult shape of DESIGN.md. */
import type { ContentBlock, ExecutionEvent, LimitKind, MimeBundle, ToolResult } from '@codebox/core'

export interface CallOutcome {
  stdout: string
  stderr: string
  displays: MimeBundle[]
  exitCode: number
  isError: boolean
  executionTime: number
  limitsExceeded: LimitKind[]
  taskId?: string
  taskStatus?: ToolResult['structuredContent']['taskStatus']
}

const limitNotes: Record<LimitKind, string> = {
  TIMEOUT: 'TIMEOUT: the call ran past its time limit; all of its processes were killed.',
  OOM: 'OOM: the session ran out of memory; the kernel killed a process of this call.',
  OUTPUT_TRUNCATED: 'OUTPUT_TRUNCATED: the output exceeded the per-call limit; the rest was dropped.',
  PIDS: 'PIDS: the session reached its process limit; a fork or thread was refused.',
}

/** The line appended to stderr for each limit, so a model reading the output learns of it too. */
export const limitNote = (kind: LimitKind): string => `[codebox] ${limitNotes[kind]}\n`

export function toToolResult(o: CallOutcome): ToolResult {
  const content: ContentBlock[] = []
  if (o.stdout) content.push({ type: 'text', text: o.stdout })
  for (const d of o.displays) {
    const image = d['image/png'] ? 'image/png' : d['image/jpeg'] ? 'image/jpeg' : undefined
    if (image) content.push({ type: 'image', data: d[image]!, mimeType: image })
    else if (d['text/html']) {
      content.push({ type: 'text', text: d['text/plain'] ?? '' })
      content.push({ type: 'resource', resource: { type: 'text', uri: 'display://html', mimeType: 'text/html', text: d['text/html'] } })
    } else if (d['image/svg+xml']) {
      content.push({ type: 'resource', resource: { type: 'text', uri: 'display://svg', mimeType: 'image/svg+xml', text: d['image/svg+xml'] } })
    } else if (d['text/plain'] !== undefined) content.push({ type: 'text', text: d['text/plain'] })
  }
  if (o.stderr) content.push({ type: 'text', text: o.stderr })
  return {
    content,
    structuredContent: {
      stdout: o.stdout,
      stderr: o.stderr,
      exitCode: o.exitCode,
      executionTime: Math.round(o.executionTime * 1000) / 1000,
      ...(o.taskId !== undefined ? { taskId: o.taskId } : {}),
      ...(o.taskStatus !== undefined ? { taskStatus: o.taskStatus } : {}),
      ...(o.limitsExceeded.length ? { limitsExceeded: o.limitsExceeded } : {}),
    },
    isError: o.isError,
  }
}

/** Most entries of one display bundle the host keeps. */
const MAX_BUNDLE_ENTRIES = 32
const mimeType = /^[\w.+-]{1,64}\/[\w.+-]{1,64}$/
const base64 = /^[A-Za-z0-9+/]*={0,2}$/

/**
 * A display bundle from the executor made safe for the result schema: string values only under
 * mime-type keys, images only as valid base64. Returns what was dropped, for a note in stderr.
 */
export function sanitizeBundle(data: Record<string, unknown>): { bundle: MimeBundle; dropped: string[] } {
  const bundle: MimeBundle = {}
  const dropped: string[] = []
  let entries = 0
  for (const [key, value] of Object.entries(data)) {
    const name = key.slice(0, 64)
    if (++entries > MAX_BUNDLE_ENTRIES) dropped.push(`${name} (more than ${MAX_BUNDLE_ENTRIES} entries)`)
    else if (!mimeType.test(key)) dropped.push(`${JSON.stringify(name)} (not a mime type)`)
    else if (typeof value !== 'string')
      dropped.push(`${key} (${value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`}, not a string)`)
    else if (key.startsWith('image/') && key !== 'image/svg+xml') {
      const compact = value.replace(/\s+/g, '')
      if (compact.length % 4 === 0 && base64.test(compact)) bundle[key] = compact
      else dropped.push(`${key} (not base64)`)
    } else bundle[key] = value
  }
  return { bundle, dropped }
}

/** What a bundle costs against the per-call output limit: UTF-16 units of its keys and values. */
export const bundleSize = (bundle: MimeBundle): number => Object.entries(bundle).reduce((n, [k, v]) => n + k.length + v.length, 0)

/**
 * One call's output as the host keeps it: stdout, stderr and display data counted against the
 * per-call limit (UTF-16 units, never more than the executor's UTF-8 bytes), whatever the
 * executor claims it already dropped; the rest is dropped and reported as OUTPUT_TRUNCATED.
 */
export class OutputBudget {
  stdout = ''
  stderr = ''
  readonly displays: MimeBundle[] = []
  truncated = false
  private left: number
  private readonly dropped = new Set<string>()

  constructor(limit: number) {
    this.left = limit
  }

  /** The event to pass on for an executor event (already type-checked by the protocol), or undefined. */
  take(e: Record<string, unknown>): ExecutionEvent | undefined {
    if ((e.ev === 'stdout' || e.ev === 'stderr') && typeof e.text === 'string') {
      const text = this.cut(e.text)
      if (!text) return undefined
      if (e.ev === 'stdout') this.stdout += text
      else this.stderr += text
      return { type: e.ev, text }
    }
    if (e.ev !== 'display' || e.data === null || typeof e.data !== 'object') return undefined
    const { bundle, dropped } = sanitizeBundle(e.data as Record<string, unknown>)
    for (const d of dropped) if (this.dropped.size < 20) this.dropped.add(d)
    if (Object.keys(bundle).length === 0) return undefined
    const size = bundleSize(bundle)
    if (size > this.left) {
      this.truncated = true
      this.left = 0
      return undefined
    }
    this.left -= size
    this.displays.push(bundle)
    return e.executeResult === true ? { type: 'display', data: bundle, executeResult: true } : { type: 'display', data: bundle }
  }

  /** Lines for stderr about display data that was dropped for its type. */
  notes(): string {
    return this.dropped.size ? `[codebox] display data dropped: ${[...this.dropped].join(', ')}.\n` : ''
  }

  private cut(text: string): string {
    if (text.length <= this.left) {
      this.left -= text.length
      return text
    }
    this.truncated = true
    const kept = text.slice(0, this.left)
    this.left = 0
    return kept
  }
}
