/** Turns what the executor reported for one call into the one ToolResult shape of DESIGN.md. */
import type { ContentBlock, LimitKind, MimeBundle, ToolResult } from '@codebox/core'

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
