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
  | { type: 'stdout'; text: string }
  | { type: 'stderr'; text: string }
  /** `executeResult`: the value of the cell's last expression (a notebook's Out[n]); absent for other displays. */
  | { type: 'display'; data: MimeBundle; executeResult?: true }
  | { type: 'result'; result: ToolResult }

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

/** A FileEntry with its details: Session.files.stat, makeDir, move, and list with `details`. */
export interface FileInfo extends FileEntry {
  /** Permission bits (`st_mode & 0o7777`). */
  mode: number
  /** As `ls -l` shows them: `-rw-r--r--`, `drwxr-xr-x`, `lrwxrwxrwx`. */
  permissions: string
  /** Owner and group names in the sandbox (the number when the sandbox has no name for it). */
  owner: string
  group: string
  /** A symlink's target as written in the link: never followed, it may name anything. */
  symlinkTarget?: string
}

/** What a change under a watched directory was: as fsnotify names them (E2B's watch events). */
export type WatchEventType = 'create' | 'write' | 'remove' | 'rename' | 'chmod'

/** One change under a watched directory (Session.files.watch). */
export interface WatchEvent {
  type: WatchEventType
  /** Path relative to the watched directory. */
  name: string
}
