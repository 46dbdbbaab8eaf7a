/**
 * The nine AgentCore tools on a session: validates each tool's arguments with the wire schemas
 * and runs it, as a stream of events that ends in the one result shape. The native API, the
 * AgentCore API and MCP all invoke tools through here.
 */
import {
  CodeboxError,
  isCodeboxError,
  parseWire,
  toolArgumentSchemas,
  toolNames,
  validationError,
  type ContentBlock,
  type ExecutionEvent,
  type Language,
  type ToolName,
  type ToolResult,
} from '@codebox/core'
import type { JsRuntime, Session } from '@codebox/sandbox'
import type { z } from 'zod'

export interface ToolCallOptions {
  timeoutMs?: number
  signal?: AbortSignal
}

/** What the audit log records of a call's input. */
export interface ToolInputSummary {
  language?: string
  /** The code or command, when the tool runs one. */
  code?: string
}

export function isToolName(name: unknown): name is ToolName {
  return typeof name === 'string' && (toolNames as readonly string[]).includes(name)
}

/** A tool call whose arguments passed their schema: parsed once, then run. */
export type ToolCall = { [K in ToolName]: { name: K; args: z.output<(typeof toolArgumentSchemas)[K]>; summary: ToolInputSummary } }[ToolName]

/** Validates a tool's arguments up front, so a bad call fails before anything runs. */
export function checkToolCall(name: unknown, args: unknown): ToolCall {
  if (!isToolName(name)) throw validationError('name', `unknown tool ${JSON.stringify(name)}; use one of ${toolNames.join(', ')}`)
  const parsed = parseWire(toolArgumentSchemas[name], args ?? {}, 'arguments') as Record<string, unknown>
  const summary: ToolInputSummary = {}
  if (name === 'executeCode') {
    summary.language = languageOf(args as Record<string, unknown>)
    summary.code = String(parsed.code)
  } else if (name === 'executeCommand' || name === 'startCommandExecution') {
    summary.language = 'shell'
    summary.code = String(parsed.command)
  }
  return { name, args: parsed, summary } as ToolCall
}

/** Checks what depends on the session (a runtime its image must have); throws ValidationError before anything runs. */
export function checkCallOnSession(session: Session, call: ToolCall): void {
  if (call.name === 'executeCode' && call.summary.language !== 'python') runtimeOf(session, call.args.runtime)
}

/** Runs one tool; yields stdout/stderr/display events as produced and returns (and yields) the result. */
export async function* runTool(session: Session, call: ToolCall, options: ToolCallOptions = {}): AsyncGenerator<ExecutionEvent, ToolResult> {
  const started = performance.now()
  switch (call.name) {
    case 'executeCode': {
      const { code, clearContext } = call.args
      const language = call.summary.language as Language
      const runtime = language === 'python' ? undefined : runtimeOf(session, call.args.runtime)
      return yield* session.executeCode({ code, language, runtime, clearContext, ...options })
    }
    case 'executeCommand': {
      return yield* session.streamCommand(call.args.command, options)
    }
    case 'startCommandExecution':
      return yield* final(await session.tasks.start(call.args.command))
    case 'getTask':
      return yield* final(await session.tasks.get(call.args.taskId))
    case 'stopTask':
      return yield* final(await session.tasks.stop(call.args.taskId))
    case 'writeFiles': {
      const a = call.args
      const written: string[] = []
      for (const [i, f] of a.content.entries()) {
        const data = 'text' in f ? f.text : decodeBase64(f.blob, `arguments.content.${i}.blob`)
        await session.files.write(f.path, data, options)
        written.push(f.path)
      }
      return yield* final(fileResult([{ type: 'text', text: `Wrote ${written.length} file(s): ${written.join(', ')}` }], started))
    }
    case 'readFiles':
      return yield* final(fileResult(await readFiles(session, call.args.paths, options), started))
    case 'listFiles': {
      const a = call.args
      const entries = await session.files.list(a.directoryPath ?? a.path ?? '', options)
      const blocks: ContentBlock[] = entries.map((e) => ({
        type: 'resource_link',
        uri: fileUri(e.path),
        name: e.name,
        description: e.type === 'directory' ? 'Directory' : 'File',
        mimeType: e.mimeType,
        size: e.size,
      }))
      return yield* final(fileResult(blocks, started))
    }
    case 'removeFiles': {
      const a = call.args
      for (const path of a.paths) await session.files.remove(path, { ...options, recursive: true })
      return yield* final(fileResult([{ type: 'text', text: `Removed ${a.paths.length} path(s): ${a.paths.join(', ')}` }], started))
    }
  }
}

/**
 * The files of one readFiles call, together at most the session's file limit (100 MB by
 * default): a path that would bring the total past it is a LimitExceeded naming that path.
 */
async function readFiles(session: Session, paths: readonly string[], options: ToolCallOptions): Promise<ContentBlock[]> {
  const cap = session.limits.fileBytes
  const blocks: ContentBlock[] = []
  let total = 0
  for (const path of paths) {
    const { mimeType, stream } = await session.files.readStream(path, { signal: options.signal, maxBytes: cap - total }).catch((e: unknown) => {
      if (!isCodeboxError(e) || e.code !== 'LimitExceeded' || e.details.size === undefined || total === 0) throw e
      throw new CodeboxError(
        'LimitExceeded',
        `readFiles returns at most ${cap} bytes in all: ${path} (${String(e.details.size)} bytes) would bring the ${total} bytes of the paths before it past that; read it in a call of its own`,
        {
          details: { limit: cap, path, size: e.details.size, total },
        },
      )
    })
    const parts: Buffer[] = []
    for await (const c of stream) parts.push(c)
    const bytes = Buffer.concat(parts)
    total += bytes.length
    blocks.push(resourceBlock(path, mimeType, bytes))
  }
  return blocks
}

/** The language to run, from the raw arguments: AgentCore clients may send only `runtime`. */
function languageOf(a: Record<string, unknown>): Language {
  const language = (a.language ?? 'python') as Language
  const runtime = a.runtime as string | undefined
  if (runtime === 'python' && language !== 'python') throw validationError('arguments.runtime', `python cannot run ${language}; use nodejs or deno`)
  if ((runtime === 'nodejs' || runtime === 'deno') && language === 'python') {
    if (a.language === undefined) return 'javascript'
    throw validationError('arguments.runtime', `${runtime} cannot run python; use runtime python (or omit runtime)`)
  }
  return language
}

/** Where a JavaScript or TypeScript cell runs: Node.js unless `deno` is asked for and the session's image has it. */
function runtimeOf(session: Session, runtime: string | undefined): JsRuntime {
  if (runtime !== 'deno') return 'nodejs'
  if (!session.runtimes.includes('deno')) {
    throw validationError('arguments.runtime', 'deno is not available: this codebox sandbox image was built without Deno; use nodejs (or omit runtime)')
  }
  return 'deno'
}

async function* final(result: ToolResult): AsyncGenerator<ExecutionEvent, ToolResult> {
  yield { type: 'result', result }
  return result
}

function fileResult(content: ContentBlock[], started: number): ToolResult {
  const executionTime = Math.round((performance.now() - started) * 1000) / 1000
  return { content, structuredContent: { stdout: '', stderr: '', exitCode: 0, executionTime }, isError: false }
}

const fileUri = (path: string): string => `file:///${path.split('/').map(encodeURIComponent).join('/')}`

function resourceBlock(path: string, mimeType: string, bytes: Buffer): ContentBlock {
  const text = isText(mimeType) ? new TextDecoder('utf-8', { fatal: true }) : undefined
  if (text) {
    try {
      return { type: 'resource', resource: { type: 'text', uri: fileUri(path), mimeType, text: text.decode(bytes) } }
    } catch {
      // Not UTF-8 after all: send the bytes.
    }
  }
  return { type: 'resource', resource: { type: 'blob', uri: fileUri(path), mimeType, blob: bytes.toString('base64') } }
}

function isText(mimeType: string): boolean {
  return mimeType.startsWith('text/') || /json|xml|javascript|typescript|csv|yaml|x-sh|x-python/.test(mimeType)
}

function decodeBase64(value: string, field: string): Buffer {
  const clean = value.replace(/\s+/g, '')
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(clean) || clean.length % 4 === 1) throw validationError(field, 'is not valid base64')
  return Buffer.from(clean, clean.includes('-') || clean.includes('_') ? 'base64url' : 'base64')
}
