/**
 * CodeInterpreter: one codebox session and everything done in it — code, shell commands,
 * background tasks and files. `await using ci = await codeSession()` stops it at the end of the
 * block.
 */
import type { ExecutionEvent, Language, SessionInfo, ToolArguments, ToolName, ToolResult } from '@codebox/core'
import { ConflictError, NotFoundError } from './errors.ts'
import * as files from './files.ts'
import { HttpClient, type CallOptions, type ClientOptions } from './http.ts'
import { invoke, invokeStream } from './invoke.ts'
import { getSession, startSession, stopSession, type StartSessionOptions } from './routes.ts'

/** Options of `new CodeInterpreter()`: how to reach codebox, and a session to attach to. */
export interface CodeInterpreterOptions extends ClientOptions {
  /** An existing session to use instead of calling `start()`. Default none. */
  sessionId?: string
}

/** Options of `executeCode` and `executeCodeStream`. */
export interface ExecuteCodeOptions extends CallOptions {
  /** The code; up to 4 MiB. */
  code: string
  /** Default `python`. */
  language?: Language
  /** Restart the language's kernel first, dropping its state. Default false. */
  clearContext?: boolean
}

/** One file for `writeFiles`: UTF-8 text, base64 bytes (`blob`), or bytes (`data`, base64-encoded for you). */
export type WriteFileInput = { path: string; text: string } | { path: string; blob: string } | { path: string; data: Uint8Array }

/**
 * One codebox session. Create it with `codeSession()`, or `new CodeInterpreter()` then `start()`,
 * or attach to a running session with `{sessionId}`. Every method takes `{signal, timeoutMs}` last.
 * A non-zero exit code or a Python exception is data in the ToolResult (`isError`), not an error.
 */
export class CodeInterpreter {
  readonly #http: HttpClient
  #sessionId: string | undefined
  #stopped: SessionInfo | undefined

  /** Reads `CODEBOX_URL` / `CODEBOX_API_KEY` here (when a `process` global exists), not at import. */
  constructor(options: CodeInterpreterOptions = {}) {
    const { sessionId, ...clientOptions } = options
    this.#http = new HttpClient(clientOptions)
    this.#sessionId = sessionId
  }

  /** The session's id; undefined before `start()`. */
  get sessionId(): string | undefined {
    return this.#sessionId
  }

  /**
   * Starts the session (`POST /v1/sessions`). A clientToken is generated when none is given, so
   * the call is retried safely. A CodeInterpreter holds one session at a time: stop it first.
   */
  async start(request: StartSessionOptions = {}): Promise<SessionInfo> {
    if (this.#sessionId !== undefined && !this.#stopped) {
      throw new ConflictError(`this CodeInterpreter already holds session ${this.#sessionId}; stop() it or create another CodeInterpreter`)
    }
    const info = await startSession(this.#http, request)
    this.#sessionId = info.sessionId
    this.#stopped = undefined
    return info
  }

  /** The session's record (`GET /v1/sessions/{id}`). */
  async info(options: CallOptions = {}): Promise<SessionInfo> {
    return getSession(this.#http, this.#require(), options)
  }

  /**
   * Stops the session and returns its final record. Idempotent: a second call, or a call on a
   * session the server no longer knows, does nothing; before `start()` it returns undefined.
   */
  async stop(options: CallOptions = {}): Promise<SessionInfo | undefined> {
    if (this.#sessionId === undefined) return undefined
    if (this.#stopped) return this.#stopped
    try {
      this.#stopped = await stopSession(this.#http, this.#sessionId, options)
      return this.#stopped
    } catch (e) {
      if (e instanceof NotFoundError) return undefined
      throw e
    }
  }

  /** Stops the session: `await using ci = await codeSession()`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop()
  }

  /**
   * Calls one of the nine tools and returns its result. Never retried. `timeoutMs` is the call's
   * limit on the server (default the session's); the client waits 10 s longer for the result.
   */
  async invoke<N extends ToolName>(name: N, args: ToolArguments[N], options: CallOptions = {}): Promise<ToolResult> {
    return invoke(this.#http, this.#require(), name, args, options)
  }

  /** Like `invoke`, yielding the events as they happen; the last is `result`, also returned. */
  async *invokeStream<N extends ToolName>(name: N, args: ToolArguments[N], options: CallOptions = {}): AsyncGenerator<ExecutionEvent, ToolResult, undefined> {
    return yield* invokeStream(this.#http, this.#require(), name, args, options)
  }

  /** Runs code in the session's kernel for its language (state persists between calls). */
  executeCode(options: ExecuteCodeOptions): Promise<ToolResult> {
    const { code, language, clearContext, ...call } = options
    return this.invoke('executeCode', { code, language, clearContext }, call)
  }

  /** Like `executeCode`, yielding stdout, stderr and display events as produced, then the result. */
  executeCodeStream(options: ExecuteCodeOptions): AsyncGenerator<ExecutionEvent, ToolResult, undefined> {
    const { code, language, clearContext, ...call } = options
    return this.invokeStream('executeCode', { code, language, clearContext }, call)
  }

  /** Runs a shell command (`sh -c`) in the working directory and waits for it. */
  executeCommand(command: string, options: CallOptions = {}): Promise<ToolResult> {
    return this.invoke('executeCommand', { command }, options)
  }

  /** Like `executeCommand`, yielding output as it is produced, then the result. */
  executeCommandStream(command: string, options: CallOptions = {}): AsyncGenerator<ExecutionEvent, ToolResult, undefined> {
    return this.invokeStream('executeCommand', { command }, options)
  }

  /** Starts a command in the background; `structuredContent.taskId` names the task. */
  startCommand(command: string, options: CallOptions = {}): Promise<ToolResult> {
    return this.invoke('startCommandExecution', { command }, options)
  }

  /** A background task's status and output so far. */
  getTask(taskId: string, options: CallOptions = {}): Promise<ToolResult> {
    return this.invoke('getTask', { taskId }, options)
  }

  /** Stops a background task. */
  stopTask(taskId: string, options: CallOptions = {}): Promise<ToolResult> {
    return this.invoke('stopTask', { taskId }, options)
  }

  /** Writes files (parents created) through the `writeFiles` tool; up to 1000 per call. */
  writeFiles(entries: WriteFileInput[], options: CallOptions = {}): Promise<ToolResult> {
    const content = entries.map((f) => ('data' in f ? { path: f.path, blob: files.bytesToBase64(f.data) } : f))
    return this.invoke('writeFiles', { content }, options)
  }

  /** Reads files through the `readFiles` tool: text as text, other files as base64 blobs. */
  readFiles(paths: string[], options: CallOptions = {}): Promise<ToolResult> {
    return this.invoke('readFiles', { paths }, options)
  }

  /** Lists a directory through the `listFiles` tool. Default the working directory. */
  listFiles(path?: string, options: CallOptions = {}): Promise<ToolResult> {
    return this.invoke('listFiles', path === undefined ? {} : { directoryPath: path }, options)
  }

  /** Removes files through the `removeFiles` tool. */
  removeFiles(paths: string[], options: CallOptions = {}): Promise<ToolResult> {
    return this.invoke('removeFiles', { paths }, options)
  }

  /**
   * Uploads one file's raw bytes (`PUT .../files/{path}`), up to the file limit (100 MB by
   * default). A stream is sent as it is read and never retried; other bodies are retried.
   */
  async uploadFile(path: string, data: files.UploadData, options: CallOptions = {}): Promise<files.FileWriteResult> {
    return files.uploadFile(this.#http, this.#require(), path, data, options)
  }

  /** Downloads one file into memory. */
  async downloadFile(path: string, options: CallOptions = {}): Promise<Uint8Array> {
    return files.downloadFile(this.#http, this.#require(), path, options)
  }

  /** Opens one file for download; read or cancel `stream` (the call's timeout runs until it ends). */
  async downloadFileStream(path: string, options: CallOptions = {}): Promise<files.FileDownload> {
    return files.downloadFileStream(this.#http, this.#require(), path, options)
  }

  /** Lists a directory as FileEntry records. Default the working directory, not recursive. */
  async listFileEntries(path?: string, options: files.ListFileEntriesOptions = {}): Promise<files.FileEntryList> {
    return files.listFileEntries(this.#http, this.#require(), path, options)
  }

  /** Deletes a file, or a directory with `{recursive: true}`. */
  async deleteFile(path: string, options: files.DeleteFileOptions = {}): Promise<void> {
    return files.deleteFile(this.#http, this.#require(), path, options)
  }

  #require(): string {
    if (this.#sessionId === undefined) {
      throw new ConflictError('this CodeInterpreter has no session: call start() first, or use codeSession() / new CodeInterpreter({sessionId})')
    }
    return this.#sessionId
  }
}

/**
 * Starts a session and returns its CodeInterpreter: `await using ci = await codeSession({baseUrl})`.
 * Takes the client options, the StartSessionRequest fields and `{signal, timeoutMs}` in one object.
 */
export async function codeSession(options: ClientOptions & StartSessionOptions = {}): Promise<CodeInterpreter> {
  const { baseUrl, apiKey, timeoutMs, maxRetries, fetch, headers, ...request } = options
  const ci = new CodeInterpreter({ baseUrl, apiKey, timeoutMs, maxRetries, fetch, headers })
  await ci.start(request)
  return ci
}
