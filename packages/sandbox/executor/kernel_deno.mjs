// The JavaScript and TypeScript notebook kernel of the `deno` runtime. The executor starts it
// with `deno run` inside the sandbox and speaks the "Executor ↔ kernel" protocol of
// docs/executor-protocol.md: cells arrive as JSON lines on fd 3, displays and `done` go back as
// JSON lines on fd 4, and the user's output goes to the real fd 1 and 2. Cells are rewritten by
// js_transform.mjs and run by kernel_js_common.mjs exactly as in the Node kernel (globals that a
// later cell may declare again, top-level await, types stripped), one at a time in the global
// scope of this Deno process, so `Deno.*`, web APIs and `npm:`/`jsr:`/`node:` imports are Deno's own. Values are
// shown as Deno shows them (`Deno.inspect`), or through `[Symbol.for("Jupyter.display")]()` as
// in Deno's Jupyter kernel.

import * as transformer from './js_transform.mjs'
import { CellRunner, neverThrowing, requestReader, textAndJson } from './kernel_js_common.mjs'

/** Deno's file APIs take paths, not descriptors: the inherited fds are reached through /proc. */
const requestPath = '/proc/self/fd/3'
const replyPath = '/proc/self/fd/4'
/** Frames in these places are the kernel's (or Deno's event loop's), not the user's. */
const kernelLocations = [new URL('.', import.meta.url).href, 'ext:deno_node/vm.', 'ext:core/']
const jupyterDisplay = Symbol.for('Jupyter.display')

const replies = Deno.openSync(replyPath, { write: true })
const encoder = new TextEncoder()

function send(message) {
  const bytes = encoder.encode(`${JSON.stringify(message)}\n`)
  let offset = 0
  while (offset < bytes.length) offset += replies.writeSync(bytes.subarray(offset))
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

async function serveRequests() {
  const requests = await Deno.open(requestPath, { read: true })
  const decoder = new TextDecoder()
  const readRequests = requestReader((text) => Deno.stderr.writeSync(encoder.encode(text)))
  for await (const chunk of requests.readable) {
    for (const request of readRequests(decoder.decode(chunk, { stream: true }))) await runner.runCell(request)
  }
}

globalThis.addEventListener('error', reportUncaught)
globalThis.addEventListener('unhandledrejection', reportUncaught)
send({ type: 'ready' })
// the executor is gone, or fd 4 is: nothing left to serve
serveRequests().then(
  () => Deno.exit(0),
  () => Deno.exit(1),
)
