/**
 * E2B envd's Connect-RPC services, `process.Process` and `filesystem.Filesystem`, on a codebox
 * session: what the e2b SDKs' `sandbox.commands` and `sandbox.files` (but reading and writing,
 * which is envd's `/files`) call. Served with the official Connect library (@connectrpc/connect,
 * connect-node's request/response adapters on Fastify routes) and protobuf-es types generated from
 * our own .proto files (proto/, `npm run proto:e2b -w packages/server`).
 *
 * Mapping (docs/e2b.md, "E2B envd"): a process is a session task (session.tasks.spawn, connect, list,
 * sendInput, closeStdin, signal, resize), run as the session's user, in a terminal when started
 * with `pty` (its output is then E2B's `pty` data); E2B's user `user` and
 * its home `/home/user` (or `~`) are the session's user and `/workspace`, `root` is refused;
 * file operations are session.files (stat, makeDir, move, list, remove, watch). Streams end when
 * the client goes away (the process runs on, as with E2B) and carry keepalives at the interval
 * the client asks for (`Keepalive-Ping-Interval`, bounded). Errors are Connect errors with the
 * codes the SDKs map onto their exceptions.
 */
import { randomUUID } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { MessageInitShape } from '@bufbuild/protobuf'
import { timestampFromDate } from '@bufbuild/protobuf/wkt'
import {
  Code,
  ConnectError,
  createConnectRouter,
  createContextKey,
  createContextValues,
  type HandlerContext,
  type Interceptor,
  type ServiceImpl,
} from '@connectrpc/connect'
import { compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from '@connectrpc/connect-node'
import { isCodeboxError, type ErrorCode, type FileInfo, type WatchEvent } from '@codebox/core'
import {
  MAX_TERMINAL_SIZE,
  type FileWatch,
  type ProcessEnd,
  type ProcessEvent as EngineProcessEvent,
  type ProcessSignal,
  type ProcessStream,
  type Session,
  type TaskSelector,
  type TerminalSize,
} from '@codebox/sandbox'
import type { E2bDeps, E2bSandbox } from './deps.ts'
import {
  type EntryInfoSchema,
  EventType,
  FileType,
  Filesystem,
  type FilesystemEventSchema,
  type WatchDirResponseSchema,
} from './proto/filesystem/filesystem_pb.ts'
import {
  Process,
  Signal,
  type ProcessEvent_EndEventSchema,
  type ProcessEventSchema,
  type ProcessInput,
  type ProcessSelector,
  type StartResponseSchema,
} from './proto/process/process_pb.ts'

/** E2B's home directory of its default user; codebox's is `/workspace`. */
export const E2B_HOME = '/home/user'
const WORKSPACE = '/workspace'
/** Largest Connect message read (a SendInput carries at most 1 MiB of stdin, as base64 in JSON). */
const READ_MAX_BYTES = 4 * 1024 * 1024
/** Keepalive interval bounds, seconds (the SDKs ask for 50). */
const KEEPALIVE_MIN_S = 1
const KEEPALIVE_MAX_S = 600
const KEEPALIVE_DEFAULT_S = 50
/** Events a polled watcher (CreateWatcher) keeps between two GetWatcherEvents; older ones are dropped. */
const WATCHER_MAX_EVENTS = 10_000
/** The engine's own limit on list depth. */
const MAX_DEPTH = 64

const requestKey = createContextKey<FastifyRequest | undefined>(undefined, { description: 'the Fastify request' })

/**
 * Registers `process.Process/*` and `filesystem.Filesystem/*` (POST, Connect protocol, JSON or
 * binary) relative to `scope`; the E2B front door mounts it under `/e2b/envd`. The routes read
 * their bodies themselves (Connect's framing), in a child scope so no body parser of the
 * caller's scope is touched.
 */
export async function envdConnectRoutes(scope: FastifyInstance, deps: E2bDeps): Promise<void> {
  const router = createConnectRouter({
    grpc: false,
    grpcWeb: false,
    readMaxBytes: READ_MAX_BYTES,
    acceptCompression: [compressionGzip],
    jsonOptions: { ignoreUnknownFields: true },
    interceptors: [logInternalErrors],
  })
  const watchers = new WeakMap<Session, Map<string, PolledWatcher>>()
  router.service(Process, processService(deps))
  router.service(Filesystem, filesystemService(deps, watchers))
  await scope.register(async (child) => {
    child.removeAllContentTypeParsers()
    // The body stays unread: Connect reads (and bounds) it from the raw request.
    child.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined))
    for (const handler of router.handlers) {
      child.post(handler.requestPath, async (request, reply) => {
        reply.hijack()
        const values = createContextValues().set(requestKey, request)
        const uReq = universalRequestFromNodeRequest(request.raw, reply.raw, undefined, values)
        try {
          await universalResponseToNodeResponse(await handler(uReq), reply.raw)
        } catch (e) {
          // The client went away mid-response (Aborted) or the socket failed: nothing to answer.
          if (ConnectError.from(e).code !== Code.Aborted) request.log.warn({ err: e, rpc: handler.requestPath }, 'envd rpc response failed')
          if (!reply.raw.writableEnded) reply.raw.destroy()
        }
      })
    }
  })
}

/** Logs what failed for an unknown reason (Internal: the client only hears "see the server log"), unary or mid-stream. */
const logInternalErrors: Interceptor = (next) => async (req) => {
  const log = (e: unknown): void => {
    const err = ConnectError.from(e)
    if (err.code === Code.Internal) req.contextValues.get(requestKey)?.log.error({ err: err.cause ?? err, rpc: req.url }, 'envd rpc failed')
  }
  try {
    const res = await next(req)
    if (!res.stream) return res
    return { ...res, message: logged(res.message, log) }
  } catch (e) {
    log(e)
    throw e
  }
}

async function* logged<M>(messages: AsyncIterable<M>, log: (e: unknown) => void): AsyncGenerator<M> {
  try {
    yield* messages
  } catch (e) {
    log(e)
    throw e
  }
}

// ---------------------------------------------------------------------------------------------
// process.Process

function processService(deps: E2bDeps): ServiceImpl<typeof Process> {
  return {
    async *start(req, ctx) {
      const sandbox = await sandboxFor(deps, ctx)
      const { session } = sandbox
      checkUser(ctx)
      const config = req.process
      if (!config || config.cmd === '') throw new ConnectError('process.cmd: give the program to run', Code.InvalidArgument)
      const pty = req.pty !== undefined ? ptySize(req.pty.size, 'pty.size') : undefined
      const sandboxEnvs = await engine(() => sandbox.envs())
      const stream = await engine(() =>
        session.tasks.spawn({
          cmd: config.cmd,
          args: config.args,
          // The sandbox's own variables, under what this process is given.
          env: { ...sandboxEnvs, ...config.envs },
          ...(config.cwd !== undefined && config.cwd !== '' ? { cwd: toSandboxCwd(config.cwd) } : {}),
          ...(req.tag !== undefined ? { tag: req.tag } : {}),
          // A terminal is its input; else envd gives a process a stdin pipe unless asked not to.
          ...(pty ? { pty } : { stdin: req.stdin !== false }),
          signal: ctx.signal,
        }),
      )
      yield* processEvents<MessageInitShape<typeof StartResponseSchema>>(stream, ctx, (event) => ({ event }))
    },

    async *connect(req, ctx) {
      const { session } = await sandboxFor(deps, ctx)
      const selector = toSelector(req.process)
      // E2B follows running processes only: an ended one is gone (not found), not replayed.
      const running = await engine(() => session.tasks.list({ running: true }))
      const found = running.some((p) => ('pid' in selector ? p.pid === selector.pid : 'tag' in selector && p.tag === selector.tag))
      if (!found) throw new ConnectError(`no running process with ${describe(selector)}`, Code.NotFound)
      const stream = await engine(() => session.tasks.connect(selector, { signal: ctx.signal }))
      yield* processEvents(stream, ctx, (event) => ({ event }))
    },

    async list(_req, ctx) {
      const { session } = await sandboxFor(deps, ctx)
      const running = await engine(() => session.tasks.list({ running: true }))
      return {
        processes: running.map((p) => ({
          pid: p.pid,
          ...(p.tag !== null ? { tag: p.tag } : {}),
          config: { cmd: p.argv[0] ?? '', args: p.argv.slice(1), envs: p.env, cwd: fromSandboxPath(p.cwd) },
        })),
      }
    },

    async sendInput(req, ctx) {
      const { session } = await sandboxFor(deps, ctx)
      const selector = toSelector(req.process)
      await sendInput(session, selector, req.input)
      return {}
    },

    async streamInput(requests, ctx) {
      const { session } = await sandboxFor(deps, ctx)
      let selector: TaskSelector | undefined
      for await (const req of requests) {
        const event = req.event
        if (event.case === 'start') {
          if (selector) throw new ConnectError('StreamInput: the stream names its process once, in its first message (`start`)', Code.InvalidArgument)
          selector = toSelector(event.value.process)
        } else if (event.case === 'data') {
          if (!selector) throw new ConnectError('StreamInput: the first message must be `start`, naming the process', Code.InvalidArgument)
          await sendInput(session, selector, event.value.input)
        } else if (event.case !== 'keepalive') {
          throw new ConnectError('StreamInput: each message is `start`, `data` or `keepalive`', Code.InvalidArgument)
        }
      }
      if (!selector) throw new ConnectError('StreamInput: the stream ended without naming its process (`start`)', Code.InvalidArgument)
      return {}
    },

    async closeStdin(req, ctx) {
      const { session } = await sandboxFor(deps, ctx)
      await engine(() => session.tasks.closeStdin(toSelector(req.process)))
      return {}
    },

    async sendSignal(req, ctx) {
      const { session } = await sandboxFor(deps, ctx)
      const selector = toSelector(req.process)
      const signal: ProcessSignal | undefined = req.signal === Signal.SIGKILL ? 'SIGKILL' : req.signal === Signal.SIGTERM ? 'SIGTERM' : undefined
      if (!signal) throw new ConnectError(`signal: must be SIGNAL_SIGKILL (9) or SIGNAL_SIGTERM (15), got ${req.signal}`, Code.InvalidArgument)
      // A process that has ended is gone for E2B: kill() answers false for it.
      await engine(() => session.tasks.signal(selector, signal), { Conflict: Code.NotFound })
      return {}
    },

    async update(req, ctx) {
      const { session } = await sandboxFor(deps, ctx)
      const selector = toSelector(req.process)
      // Update only resizes a terminal: without `pty` there is nothing to change (as envd).
      if (req.pty === undefined) return {}
      const size = ptySize(req.pty.size, 'pty.size')
      const running = await engine(() => session.tasks.list({ running: true }))
      const found = running.filter((p) => ('pid' in selector ? p.pid === selector.pid : 'tag' in selector && p.tag === selector.tag)).at(-1)
      if (!found) throw new ConnectError(`no running process with ${describe(selector)}`, Code.NotFound)
      if (found.pty === null)
        throw new ConnectError(`the process with ${describe(selector)} was started without a PTY: there is no terminal to resize`, Code.FailedPrecondition)
      // It ended since it was listed: gone, for E2B.
      await engine(() => session.tasks.resize({ taskId: found.taskId }, size), { Conflict: Code.NotFound })
      return {}
    },
  }
}

/** The SDK's `ProcessEvent`s of an engine process stream: start, output, keepalives, end. */
async function* processEvents<R>(
  stream: ProcessStream,
  ctx: HandlerContext,
  wrap: (event: MessageInitShape<typeof ProcessEventSchema>) => R,
): AsyncGenerator<R> {
  try {
    yield wrap({ event: { case: 'start', value: { pid: stream.pid } } })
    yield* mapStream<EngineProcessEvent, R>(stream.events[Symbol.asyncIterator](), ctx, () => stream.close(), {
      keepalive: () => wrap({ event: { case: 'keepalive', value: {} } }),
      map: (e) => {
        // A terminal has one stream: E2B's `pty` data.
        if (e.type === 'stdout' && stream.pty) return wrap({ event: { case: 'data', value: { output: { case: 'pty', value: e.data } } } })
        if (e.type === 'stdout' || e.type === 'stderr') return wrap({ event: { case: 'data', value: { output: { case: e.type, value: e.data } } } })
        if (e.type === 'end') return wrap({ event: { case: 'end', value: endEvent(e) } })
        // Bytes a slow reader missed have no E2B event: the stream goes on with what is kept.
        return undefined
      },
    })
  } finally {
    // Also when the client leaves right after the start event (close is idempotent).
    await stream.close().catch(() => undefined)
  }
}

/** How E2B (Go's os.ProcessState) tells an end: `exit status N`, or the signal with exit code -1. */
export function endEvent(end: ProcessEnd): MessageInitShape<typeof ProcessEvent_EndEventSchema> {
  if (end.signal !== null) {
    const status = `signal: ${goSignalNames[end.signal] ?? end.signal}`
    return { exitCode: -1, exited: false, status, error: status }
  }
  if (end.exitCode === null) return { exitCode: -1, exited: false, status: 'unknown', error: 'the process ended without an exit status' }
  const status = `exit status ${end.exitCode}`
  return { exitCode: end.exitCode, exited: true, status, ...(end.exitCode !== 0 ? { error: status } : {}) }
}

const goSignalNames: Record<string, string> = {
  SIGKILL: 'killed',
  SIGTERM: 'terminated',
  SIGINT: 'interrupt',
  SIGHUP: 'hangup',
  SIGQUIT: 'quit',
  SIGUSR1: 'user defined signal 1',
  SIGUSR2: 'user defined signal 2',
  SIGPIPE: 'broken pipe',
  SIGABRT: 'aborted',
  SIGSEGV: 'segmentation fault',
}

/** Input for a process: `stdin` to its stdin pipe, `pty` to its terminal (FailedPrecondition for what it does not have). */
async function sendInput(session: Session, selector: TaskSelector, input: ProcessInput | undefined): Promise<void> {
  const given = input?.input
  if (given?.case !== 'stdin' && given?.case !== 'pty') throw new ConnectError('input: give the bytes to send as `stdin` or `pty`', Code.InvalidArgument)
  await engine(() => session.tasks.sendInput(selector, given.value, { target: given.case }))
}

/** A PTY size of a request: cols and rows, each from 1 to MAX_TERMINAL_SIZE, else InvalidArgument. */
function ptySize(size: { cols: number; rows: number } | undefined, field: string): TerminalSize {
  if (!size) throw new ConnectError(`${field}: give the terminal's cols and rows`, Code.InvalidArgument)
  for (const name of ['cols', 'rows'] as const) {
    const v = size[name]
    if (v < 1 || v > MAX_TERMINAL_SIZE) throw new ConnectError(`${field}.${name}: must be from 1 to ${MAX_TERMINAL_SIZE}, got ${v}`, Code.InvalidArgument)
  }
  return { cols: size.cols, rows: size.rows }
}

function toSelector(selector: ProcessSelector | undefined): TaskSelector {
  const s = selector?.selector
  if (s?.case === 'pid') return { pid: s.value }
  if (s?.case === 'tag') return { tag: s.value }
  throw new ConnectError('process: give the process by `pid` or `tag`', Code.InvalidArgument)
}

const describe = (s: TaskSelector): string => ('pid' in s ? `pid ${s.pid}` : 'tag' in s ? `tag ${JSON.stringify(s.tag)}` : s.taskId)

// ---------------------------------------------------------------------------------------------
// filesystem.Filesystem

/** A watch read by polling (CreateWatcher): its events wait here until GetWatcherEvents takes them. */
interface PolledWatcher {
  watch: FileWatch
  events: MessageInitShape<typeof FilesystemEventSchema>[]
  /** Set once the watch has ended; the watcher is forgotten after its last events are taken. */
  ended?: string
}

function filesystemService(deps: E2bDeps, watchers: WeakMap<Session, Map<string, PolledWatcher>>): ServiceImpl<typeof Filesystem> {
  return {
    async stat(req, ctx) {
      const { session } = await sandboxFor(deps, ctx)
      checkUser(ctx)
      const p = toSandboxPath(req.path, 'path')
      return { entry: entryInfo(await engine(() => session.files.stat(p.path, { signal: ctx.signal })), p.root) }
    },

    async makeDir(req, ctx) {
      const { session } = await sandboxFor(deps, ctx)
      checkUser(ctx)
      const p = toSandboxPath(req.path, 'path')
      const done = await engine(() => session.files.makeDir(p.path, { parents: true, signal: ctx.signal }), {
        Conflict: Code.InvalidArgument,
      })
      // The SDK's makeDir answers false for AlreadyExists.
      if (!done.created) throw new ConnectError(`directory already exists: ${req.path}`, Code.AlreadyExists)
      return { entry: entryInfo(done.entry, p.root) }
    },

    async move(req, ctx) {
      const { session } = await sandboxFor(deps, ctx)
      checkUser(ctx)
      const from = toSandboxPath(req.source, 'source')
      const to = toSandboxPath(req.destination, 'destination')
      return { entry: entryInfo(await engine(() => session.files.move(from.path, to.path, { signal: ctx.signal })), to.root) }
    },

    async listDir(req, ctx) {
      const { session } = await sandboxFor(deps, ctx)
      checkUser(ctx)
      const p = toSandboxPath(req.path, 'path')
      const depth = req.depth === 0 ? 1 : req.depth
      if (depth > MAX_DEPTH) throw new ConnectError(`depth: at most ${MAX_DEPTH} levels are listed, got ${depth}`, Code.InvalidArgument)
      const entries = await engine(() => session.files.list(p.path, { depth, details: true, signal: ctx.signal }))
      return { entries: entries.map((e) => entryInfo(e, p.root)) }
    },

    async remove(req, ctx) {
      const { session } = await sandboxFor(deps, ctx)
      checkUser(ctx)
      const p = toSandboxPath(req.path, 'path')
      try {
        await engine(() => session.files.remove(p.path, { recursive: true, signal: ctx.signal }))
      } catch (e) {
        // envd removes with os.RemoveAll: nothing there is no error.
        if (!(e instanceof ConnectError && e.code === Code.NotFound)) throw e
      }
      return {}
    },

    async *watchDir(req, ctx) {
      const { session } = await sandboxFor(deps, ctx)
      checkUser(ctx)
      const p = toSandboxPath(req.path, 'path')
      const watch = await startWatch(session, p.path, req.recursive, ctx.signal)
      type Out = MessageInitShape<typeof WatchDirResponseSchema>
      try {
        yield { event: { case: 'start', value: {} } } satisfies Out
        const batches = watchBatches(session, watch, p, req.includeEntry)
        yield* mapStream<MessageInitShape<typeof FilesystemEventSchema>, Out>(batches, ctx, () => watch.stop(), {
          keepalive: () => ({ event: { case: 'keepalive', value: {} } }),
          map: (e) => ({ event: { case: 'filesystem', value: e } }),
        })
      } finally {
        await watch.stop().catch(() => undefined)
      }
    },

    async createWatcher(req, ctx) {
      const { session } = await sandboxFor(deps, ctx)
      checkUser(ctx)
      const p = toSandboxPath(req.path, 'path')
      const watch = await startWatch(session, p.path, req.recursive)
      const watcherId = randomUUID()
      const watcher: PolledWatcher = { watch, events: [] }
      let mine = watchers.get(session)
      if (!mine) watchers.set(session, (mine = new Map()))
      mine.set(watcherId, watcher)
      void (async () => {
        try {
          for await (const e of watchBatches(session, watch, p, req.includeEntry)) {
            watcher.events.push(e)
            if (watcher.events.length > WATCHER_MAX_EVENTS) watcher.events.splice(0, watcher.events.length - WATCHER_MAX_EVENTS)
          }
          watcher.ended = watch.ended ?? 'stopped'
        } catch (e) {
          watcher.ended = e instanceof Error ? e.message : 'failed'
        }
      })()
      return { watcherId }
    },

    async getWatcherEvents(req, ctx) {
      const { session } = await sandboxFor(deps, ctx)
      const mine = watchers.get(session)
      const watcher = mine?.get(req.watcherId)
      if (!mine || !watcher) throw new ConnectError(`no watcher ${JSON.stringify(req.watcherId.slice(0, 64))} in this sandbox`, Code.NotFound)
      const events = watcher.events.splice(0)
      if (watcher.ended !== undefined && events.length === 0) {
        mine.delete(req.watcherId)
        throw new ConnectError(`the watcher has ended (${watcher.ended})`, Code.NotFound)
      }
      return { events }
    },

    async removeWatcher(req, ctx) {
      const { session } = await sandboxFor(deps, ctx)
      const mine = watchers.get(session)
      const watcher = mine?.get(req.watcherId)
      if (!mine || !watcher) throw new ConnectError(`no watcher ${JSON.stringify(req.watcherId.slice(0, 64))} in this sandbox`, Code.NotFound)
      mine.delete(req.watcherId)
      await watcher.watch.stop()
      return {}
    },
  }
}

async function startWatch(session: Session, path: string, recursive: boolean, signal?: AbortSignal): Promise<FileWatch> {
  const info = await engine(() => session.files.stat(path, { signal }))
  if (info.type !== 'directory') throw new ConnectError(`path is not a directory: ${info.path}`, Code.InvalidArgument)
  return engine(() => session.files.watch(path, { recursive, ...(signal ? { signal } : {}) }))
}

const eventTypes: Record<WatchEvent['type'], EventType> = {
  create: EventType.CREATE,
  write: EventType.WRITE,
  remove: EventType.REMOVE,
  rename: EventType.RENAME,
  chmod: EventType.CHMOD,
}

/** A watch's events as E2B FilesystemEvents, with the entry (stat'ed after the fact) when asked and still there. */
async function* watchBatches(
  session: Session,
  watch: FileWatch,
  dir: { path: string; root: string },
  includeEntry: boolean,
): AsyncGenerator<MessageInitShape<typeof FilesystemEventSchema>> {
  for await (const e of watch.events) {
    const event: MessageInitShape<typeof FilesystemEventSchema> = { name: e.name, type: eventTypes[e.type] }
    if (includeEntry && e.type !== 'remove' && e.type !== 'rename') {
      const rel = dir.path === '' ? e.name : `${dir.path.replace(/\/+$/, '')}/${e.name}`
      try {
        event.entry = entryInfo(await session.files.stat(rel), dir.root)
      } catch {
        // Gone again (or moved) by the time it was looked at: the event goes without its entry.
      }
    }
    yield event
  }
}

/** E2B's EntryInfo of a FileInfo: paths under the root the request named, Go's file mode letters. */
export function entryInfo(info: FileInfo, root: string): MessageInitShape<typeof EntryInfoSchema> {
  const modified = new Date(info.modifiedAt)
  return {
    name: info.name,
    type: fileTypes[info.type],
    path: joinRoot(root, info.path),
    size: BigInt(info.size),
    mode: info.mode & 0o777,
    permissions: goPermissions(info.permissions),
    owner: info.owner,
    group: info.group,
    ...(Number.isNaN(modified.getTime()) ? {} : { modifiedTime: timestampFromDate(modified) }),
    ...(info.symlinkTarget !== undefined ? { symlinkTarget: info.symlinkTarget } : {}),
  }
}

const fileTypes: Record<FileInfo['type'], FileType> = {
  file: FileType.FILE,
  directory: FileType.DIRECTORY,
  symlink: FileType.SYMLINK,
  other: FileType.UNSPECIFIED,
}

/**
 * `ls -l`'s permission string (Python's stat.filemode) as Go's FileMode.String() writes it, which
 * is what envd sends: the type letter differs for symlinks (`L`), sockets (`S`) and block
 * devices (`D`).
 */
export function goPermissions(permissions: string): string {
  const first = permissions[0]
  const go = first === 'l' ? 'L' : first === 's' ? 'S' : first === 'b' ? 'D' : first
  return first === undefined ? permissions : `${go}${permissions.slice(1)}`
}

// ---------------------------------------------------------------------------------------------
// Paths, users, errors, streams

/**
 * A path of an E2B request as the engine takes it: `/home/user/...`, `~/...` and relative paths
 * are relative to `/workspace`; `/workspace/...` passes as it is; any other absolute path too
 * (the engine refuses it, naming the workspace). `root` is the prefix the answer's paths get:
 * the one the request used.
 */
export function toSandboxPath(path: string, field: string): { path: string; root: string } {
  if (path.includes('\0')) throw new ConnectError(`${field}: a path cannot contain NUL`, Code.InvalidArgument)
  if (path === '~' || path === E2B_HOME) return { path: '', root: E2B_HOME }
  if (path.startsWith('~/')) return { path: path.slice(2), root: E2B_HOME }
  if (path.startsWith(`${E2B_HOME}/`)) return { path: path.slice(E2B_HOME.length + 1), root: E2B_HOME }
  if (path === WORKSPACE || path.startsWith(`${WORKSPACE}/`)) return { path, root: WORKSPACE }
  return { path, root: E2B_HOME }
}

/** A working directory of an E2B request as the engine takes it (absolute, or relative to /workspace). */
function toSandboxCwd(cwd: string): string {
  const p = toSandboxPath(cwd, 'process.cwd')
  return p.path === '' ? WORKSPACE : p.path
}

/** A sandbox path (relative to /workspace, or absolute) as E2B shows it: under /home/user. */
function fromSandboxPath(path: string): string {
  if (path === '' || path === WORKSPACE) return E2B_HOME
  if (path.startsWith(`${WORKSPACE}/`)) return `${E2B_HOME}${path.slice(WORKSPACE.length)}`
  return path.startsWith('/') ? path : `${E2B_HOME}/${path}`
}

function joinRoot(root: string, rel: string): string {
  const r = rel.replace(/^\/workspace(\/|$)/, '').replace(/^\/+/, '')
  return r === '' ? root : `${root}/${r}`
}

/**
 * The user a request runs as (the SDKs send `Authorization: Basic base64(user:)` when one is
 * named): E2B's `user` is the session's user; `root` is refused, as is any other name.
 */
export function checkUser(ctx: Pick<HandlerContext, 'requestHeader'>): void {
  const auth = ctx.requestHeader.get('authorization')
  if (auth === null) return
  const m = /^Basic\s+([A-Za-z0-9+/=]{0,1024})$/i.exec(auth.trim())
  if (!m) throw new ConnectError('Authorization: envd takes `Basic base64(<user>:)` naming the user', Code.InvalidArgument)
  const user =
    Buffer.from(m[1] ?? '', 'base64')
      .toString('utf8')
      .split(':')[0] ?? ''
  if (user === '' || user === 'user') return
  if (user === 'root')
    throw new ConnectError('codebox runs sandbox processes as one unprivileged user: `root` is refused; run as `user` (the default)', Code.PermissionDenied)
  throw new ConnectError(`user ${JSON.stringify(user.slice(0, 64))} does not exist in codebox sandboxes: use \`user\` (the default)`, Code.InvalidArgument)
}

async function sandboxFor(deps: E2bDeps, ctx: HandlerContext): Promise<E2bSandbox> {
  const request = ctx.values.get(requestKey)
  if (!request) throw new ConnectError('envd rpc without its request', Code.Internal)
  return engine(() => deps.sandboxOf(request))
}

const connectCodes: Partial<Record<ErrorCode, Code>> = {
  ValidationError: Code.InvalidArgument,
  Unauthorized: Code.Unauthenticated,
  Forbidden: Code.PermissionDenied,
  NotFound: Code.NotFound,
  Conflict: Code.FailedPrecondition,
  Canceled: Code.Canceled,
  RequestTimeout: Code.DeadlineExceeded,
  SessionTerminated: Code.Unavailable,
  LimitExceeded: Code.ResourceExhausted,
  RateLimited: Code.ResourceExhausted,
  QuotaExceeded: Code.ResourceExhausted,
  Timeout: Code.DeadlineExceeded,
  SandboxFailure: Code.Internal,
  Unavailable: Code.Unavailable,
  HostCapacity: Code.Unavailable,
  Internal: Code.Internal,
}

/** The Connect error of a codebox error (its message kept); anything else is Internal without its details. */
export function toConnectError(e: unknown, overrides: Partial<Record<ErrorCode, Code>> = {}): ConnectError {
  if (e instanceof ConnectError) return e
  if (isCodeboxError(e)) return new ConnectError(e.message, overrides[e.code] ?? connectCodes[e.code] ?? Code.Internal, undefined, undefined, e)
  return new ConnectError('internal error; the server log has the details', Code.Internal, undefined, undefined, e)
}

/** Runs an engine call, its codebox errors turned into Connect errors. */
async function engine<T>(fn: () => Promise<T>, overrides: Partial<Record<ErrorCode, Code>> = {}): Promise<T> {
  try {
    return await fn()
  } catch (e) {
    throw toConnectError(e, overrides)
  }
}

/** The keepalive interval a request asks for (`Keepalive-Ping-Interval`, seconds), bounded. */
export function keepaliveMs(header: string | null): number {
  const n = header === null ? NaN : Number(header)
  const s = Number.isFinite(n) && n > 0 ? Math.min(Math.max(n, KEEPALIVE_MIN_S), KEEPALIVE_MAX_S) : KEEPALIVE_DEFAULT_S
  return s * 1000
}

/**
 * A server stream of an engine stream: each item mapped (or skipped), a keepalive after every
 * quiet interval, and the engine stream closed when it ends, fails, or the client goes away
 * (the handler's signal: a disconnect or the deadline, which then ends the stream with its error).
 */
async function* mapStream<T, R>(
  source: AsyncIterator<T>,
  ctx: HandlerContext,
  close: () => Promise<void>,
  how: { keepalive: () => R; map: (item: T) => R | undefined },
): AsyncGenerator<R> {
  const interval = keepaliveMs(ctx.requestHeader.get('keepalive-ping-interval'))
  // One promise per wait (not one raced for the stream's whole life, whose reactions would pile up).
  let wake: ((v: 'aborted') => void) | undefined
  const onAbort = (): void => wake?.('aborted')
  ctx.signal.addEventListener('abort', onAbort, { once: true })
  let pending: Promise<IteratorResult<T>> | undefined
  let timer: NodeJS.Timeout | undefined
  try {
    for (;;) {
      if (ctx.signal.aborted) throw ConnectError.from(ctx.signal.reason, Code.Canceled)
      pending ??= source.next()
      const stop = new Promise<'aborted'>((resolve) => {
        wake = resolve
      })
      const tick = new Promise<'tick'>((resolve) => {
        timer = setTimeout(() => resolve('tick'), interval)
      })
      const next = await Promise.race([pending, tick, stop]).catch((e: unknown) => {
        throw toConnectError(e)
      })
      clearTimeout(timer)
      wake = undefined
      if (next === 'aborted') continue
      if (next === 'tick') {
        yield how.keepalive()
        continue
      }
      pending = undefined
      if (next.done) return
      const out = how.map(next.value)
      if (out !== undefined) yield out
    }
  } finally {
    clearTimeout(timer)
    ctx.signal.removeEventListener('abort', onAbort)
    // Stops the streaming only: a process runs on, a watch ends.
    await close().catch(() => undefined)
    if (pending) void pending.catch(() => undefined)
    void source.return?.()?.catch(() => undefined)
  }
}
