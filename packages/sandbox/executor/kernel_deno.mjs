// The JavaScript and TypeScript notebook kernel of the `deno` runtime. The executor starts it
// with `deno run` inside the sandbox and speaks the "Executor ↔ kernel" protocol of
// docs/executor-protocol.md: each cell arrives as a JSON line on a unix connection of its own to
// the executor, its displays and `done` go back on it, and the user's output goes to the real
// fd 1 and 2. Cells are rewritten by
// js_transform.mjs and run by kernel_js_common.mjs exactly as in the Node kernel (globals that a
// later cell may declare again, top-level await, types stripped), one at a time in the global
// scope of this Deno process, so `Deno.*`, web APIs and `npm:`/`jsr:`/`node:` imports are Deno's own. Values are
// shown as Deno shows them (`Deno.inspect`), or through `[Symbol.for("Jupyter.display")]()` as
// in Deno's Jupyter kernel.

import * as transformer from './js_transform.mjs'
import { CellRunner, neverThrowing, requestReader, textAndJson } from './kernel_js_common.mjs'

/** The executor's abstract socket: only the executor can listen there while it lives. */
const channelPath = `\0${Deno.env.get('CODEBOX_KERNEL_CHANNEL')}`
/** The executor checks who connected by a one-byte handshake (kernel_channel.py) instead of SO_PEERCRED. */
const passcred = Deno.env.get('CODEBOX_KERNEL_AUTH') === 'passcred'
/** Frames in these places are the kernel's (or Deno's event loop's), not the user's. */
const kernelLocations = [new URL('.', import.meta.url).href, 'ext:deno_node/vm.', 'ext:core/']
const jupyterDisplay = Symbol.for('Jupyter.display')

const encoder = new TextEncoder()
/** The current cell's connection, and its writes in order. */
let connection
let written = Promise.resolve()
/** The next cell's connection, once asked for. */
let next

function send(message) {
  const bytes = encoder.encode(`${JSON.stringify(message)}\n`)
  const conn = connection
  // Connect for the next cell before `done`, so that the executor finds it waiting; the cell's
  // code has finished, and the children it started cannot inherit the new connection.
  if (message.type === 'done') connectNext()
  written = written.then(async () => {
    for (let offset = 0; offset < bytes.length; ) offset += await conn.write(bytes.subarray(offset))
  })
}

const safeInspect = neverThrowing((value) => Deno.inspect(value, { colors: false, depth: 4 }))

function displayData(value) {
  return customDisplay(value) ?? textAndJson(value, safeInspect(value))
}

/** The mime bundle of a value that says how to show itself, as Deno's Jupyter kernel asks it. */
function customDisplay(value) {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return undefined
  try {
    if (typeof value[jupyterDisplay] !== 'function') return undefined
    const bundle = value[jupyterDisplay]()
    if (bundle === null || typeof bundle !== 'object') return undefined
    const data = {}
    for (const [mime, content] of Object.entries(bundle)) {
      data[mime] = typeof content === 'string' ? content : JSON.stringify(content)
    }
    data['text/plain'] ??= safeInspect(value)
    return data
  } catch (error) {
    return { 'text/plain': `${safeInspect(value)}\n(its Jupyter display failed: ${safeInspect(error)})` }
  }
}

const runner = new CellRunner({
  send,
  inspect: safeInspect,
  displayData,
  loadTransformer: () => transformer,
  kernelLocations,
})

// An error thrown later by a cell's callback or promise is reported, and the kernel lives on.
function reportUncaught(event) {
  event.preventDefault()
  try {
    const value = event.type === 'unhandledrejection' ? event.reason : event.error
    Deno.stderr.writeSync(encoder.encode(`Uncaught ${runner.formatThrown(value)}\n`))
  } catch {
    // nowhere left to report it
  }
}

/** Code the kernel starts runs as its uid: not dumpable, its /proc/<pid>/mem stays closed to it. */
function makeUndumpable() {
  try {
    const libc = Deno.dlopen('libc.so.6', { prctl: { parameters: ['i32', 'u64', 'u64', 'u64', 'u64'], result: 'i32' } })
    libc.symbols.prctl(4, 0n, 0n, 0n, 0n) // PR_SET_DUMPABLE
    libc.close()
  } catch {
    // no FFI here: the channel below still holds
  }
}

/**
 * One connection per cell, made when ready for it: run the one cell the executor sends, close. The
 * executor closes its end when the cell ends, so a copy a child of the cell kept is dead.
 */
async function serveRequests() {
  connectNext()
  for (;;) {
    try {
      connection = await next
    } catch {
      return // the executor is gone
    }
    next = undefined
    written = Promise.resolve()
    const request = await readRequest(connection)
    if (request !== undefined) await runner.runCell(request)
    if (next === undefined) connectNext()
    await written.catch(() => {})
    connection.close()
  }
}

/** Starts the connection for the next cell. */
function connectNext() {
  next = Deno.connect({ transport: 'unix', path: channelPath })
  next.catch(() => {})
}

async function readRequest(conn) {
  let challenged = !passcred
  const decoder = new TextDecoder()
  const readRequests = requestReader((text) => Deno.stderr.writeSync(encoder.encode(text)))
  const buffer = new Uint8Array(65536)
  for (;;) {
    const n = await conn.read(buffer).catch(() => null)
    if (n === null) return undefined
    if (!challenged) {
      // kernel_channel.py's handshake: the executor's "\n" asks for one byte that carries our credentials
      challenged = true
      await conn.write(encoder.encode('\n')).catch(() => 0)
    }
    for (const request of readRequests(decoder.decode(buffer.subarray(0, n), { stream: true }))) return request
  }
}

// The executor's SIGINT (a cancelled call) ends a cell that awaits; a busy one cannot run the
// listener, and the executor kills the kernel after its grace.
Deno.addSignalListener('SIGINT', () => void runner.interrupt())
globalThis.addEventListener('error', reportUncaught)
globalThis.addEventListener('unhandledrejection', reportUncaught)
makeUndumpable()
// the executor is gone: nothing left to serve
serveRequests().then(
  () => Deno.exit(0),
  () => Deno.exit(1),
)
