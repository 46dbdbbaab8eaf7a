// The JavaScript and TypeScript notebook kernel. The executor starts it inside the sandbox and
// speaks the "Executor ↔ kernel" protocol of docs/executor-protocol.md: each cell arrives as a
// JSON line on a unix connection of its own to the executor, its displays and `done` go back on
// it, and the user's output goes to the real fd 1 and 2. Cells run one at a time in the global
// scope of this process. What it shares with the Deno kernel is in kernel_js_common.mjs.

import { createRequire } from 'node:module'
import net from 'node:net'
import path from 'node:path'
import util from 'node:util'
import { Worker } from 'node:worker_threads'
import { CellRunner, neverThrowing, requestReader, textAndJson } from './kernel_js_common.mjs'

/** The executor's abstract socket: only the executor can listen there while it lives. */
const channelPath = `\0${process.env.CODEBOX_KERNEL_CHANNEL}`
/** The executor checks who connected by a one-byte handshake (kernel_channel.py) instead of SO_PEERCRED. */
const passcred = process.env.CODEBOX_KERNEL_AUTH === 'passcred'
/** Frames in these places are the kernel's (or the event loop's), not the user's. */
const kernelLocations = [new URL('.', import.meta.url).href, 'node:vm:', 'processTicksAndRejections (node:internal/process/task_queues']

let transformer

function loadTransformer() {
  transformer ??= import('./js_transform.mjs')
  return transformer
}

/** The current cell's connection; writes queue on it in order and `end` flushes them. */
let connection

function send(message) {
  const socket = connection
  // Connect for the next cell before `done`, so that the executor finds it waiting; the cell's
  // code has finished, and the children it started cannot inherit the new connection.
  if (message.type === 'done') {
    cellRunning(false)
    serveNextCell()
  }
  socket?.write(`${JSON.stringify(message)}\n`)
  if (message.type === 'done') socket?.end()
}

const inspect = (value) => util.inspect(value, { colors: false, depth: 4 })

// Unlike a thrown value's, a shown value's inspection is not guarded: if it throws, the cell fails.
function displayData(value) {
  return textAndJson(value, inspect(value))
}

// Writes to pipes may still be queued in libuv; `done` must come after them.
function flushOutput() {
  const flush = (stream) =>
    new Promise((resolve) => {
      if (stream.writableLength === 0 || stream.destroyed || stream.writableEnded) resolve()
      else stream.write('', () => resolve())
    })
  return Promise.all([flush(process.stdout), flush(process.stderr)])
}

const runner = new CellRunner({
  send,
  inspect: neverThrowing(inspect),
  displayData,
  loadTransformer,
  kernelLocations,
  isNativeError: util.types.isNativeError,
  flushOutput,
})

function reportUncaught(value) {
  try {
    process.stderr.write(`Uncaught ${runner.formatThrown(value)}\n`)
  } catch {
    // nowhere left to report it
  }
}

// Node's experimental features used by the kernel would warn into the user's stderr.
function silenceKernelWarnings() {
  const emitWarning = process.emitWarning
  const kernelFeatures = /^(vm\.USE_MAIN_CONTEXT_DEFAULT_LOADER|stripTypeScriptTypes) is an experimental/
  process.emitWarning = function (warning, ...rest) {
    const message = typeof warning === 'string' ? warning : warning?.message
    if (typeof message === 'string' && kernelFeatures.test(message)) return
    return emitWarning.call(this, warning, ...rest)
  }
}

/** Shared with the interrupter (kernel_node_interrupt.mjs): [a cell runs, the main thread took an interrupt]. */
const interruptState = new Int32Array(new SharedArrayBuffer(8))

function cellRunning(running) {
  Atomics.store(interruptState, 0, running ? 1 : 0)
  Atomics.notify(interruptState, 0)
}

/**
 * Interrupts on SIGINT (the executor's, when a call is cancelled). The main thread's own handler
 * runs only while it waits (a pending await); the interrupter thread also stops a busy loop.
 */
function handleInterrupts() {
  process.on('SIGINT', () => void runner.interrupt())
  let interrupter
  try {
    interrupter = new Worker(new URL('./kernel_node_interrupt.mjs', import.meta.url), {
      workerData: { state: interruptState.buffer },
      stdout: true,
      stderr: true,
    })
  } catch {
    return // no thread to spare (the pids limit): the handler above still ends a cell that waits
  }
  interrupter.unref()
  // Without it (an older or newer Node) a busy cell is killed by the executor instead.
  interrupter.on('error', () => {})
  interrupter.on('message', (message) => {
    if (message?.type !== 'interrupt') return
    Atomics.store(interruptState, 1, 1)
    Atomics.notify(interruptState, 1)
    void runner.interrupt()
  })
}

/**
 * Connects when ready for the next cell and runs the one cell the executor sends on it. The
 * executor closes its end when the cell ends, so a copy of this connection that a child of the
 * cell kept is dead, and no one but the kernel holds the next one (libuv makes it close-on-exec).
 */
function serveNextCell() {
  const socket = net.connect({ path: channelPath })
  const readRequests = requestReader((text) => process.stderr.write(text))
  let connected = false
  let request
  connection = socket
  socket.setEncoding('utf8')
  socket.on('connect', () => (connected = true))
  let challenged = !passcred
  socket.on('data', (chunk) => {
    if (!challenged) {
      // kernel_channel.py's handshake: the executor's "\n" asks for one byte that carries our credentials
      challenged = true
      socket.write('\n')
    }
    if (request !== undefined) return
    for (request of readRequests(chunk)) break
    if (request === undefined) return
    cellRunning(true)
    runner.runCell(request).catch(() => process.exit(1))
  })
  // the executor is gone: nothing left to serve
  socket.on('error', () => connected || process.exit(0))
  socket.on('close', () => connected && request === undefined && serveNextCell())
}

silenceKernelWarnings()
process.on('uncaughtException', reportUncaught)
process.on('unhandledRejection', reportUncaught)
globalThis.require = createRequire(path.join(process.cwd(), '[notebook]'))
handleInterrupts()
serveNextCell()
setImmediate(loadTransformer)
