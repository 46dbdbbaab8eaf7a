/**
 * The one result shape of DESIGN.md: every invocation streams events and ends in a ToolResult of
 * the MCP/AgentCore form `{content, structuredContent, isError}`.
 */

export type ContentBlock =
  | { type: 'text'; text: string }
  | { type: 'image'; data: string; mimeType: string }
  | { type: 'resource'; resource: { type: 'text' | 'blob'; uri: string; mimeType: string; text?: string; blob?: string } }
  | { type: 'resource_link'; uri: string; name: string; description?: string; mimeType?: string; size?: number }

/** Why a call was cut short by a limit; reported in the result, never a silent death. */
export type LimitKind = 'OOM' | 'TIMEOUT' | 'OUTPUT_TRUNCATED' | 'PIDS'

export type TaskStatus = 'submitted' | 'working' | 'completed' | 'canceled' | 'failed'

export interface StructuredContent {
  stdout: string
  stderr: string
  exitCode: number
  /** Wall time of the call in milliseconds. */
  executionTime: number
  taskId?: string
  taskStatus?: TaskStatus
  /** Limits that cut this call short; absent when none did. */
  limitsExceeded?: LimitKind[]
}

export interface ToolResult {
  content: ContentBlock[]
  structuredContent: StructuredContent
  isError: boolean
}

/** A MIME bundle as notebooks use it: `text/plain`, `text/html`, `image/png` (base64), ... */
export type MimeBundle = Record<string, string>

export type ExecutionEvent =
  { type: 'stdout'; text: string } | { type: 'stderr'; text: string } | { type: 'display'; data: MimeBundle } | { type: 'result'; result: ToolResult }

export const languages = ['python', 'javascript', 'typescript'] as const
export type Language = (typeof languages)[number]

export interface FileEntry {
  /** Path relative to the workspace. Non-UTF-8 bytes are replaced; `pathBase64` has the exact bytes. */
  path: string
  pathBase64?: string
  name: string
  type: 'file' | 'directory' | 'symlink' | 'other'
  size: number
  mimeType: string
  modifiedAt: string
}
