// The JavaScript and TypeScript notebook kernel. The executor starts it inside the sandbox and
// speaks the "Executor ↔ kernel" protocol of docs/executor-protocol.md: cells arrive as JSON
// lines on fd 3, displays and `done` go back as JSON lines on fd 4, and the user's output goes
// to the real fd 1 and 2. Cells run one at a time in the global scope of this process.
// What it shares with the Deno kernel is in kernel_js_common.mjs.

import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import util from 'node:util'
import { CellRunner, neverThrowing, requestReader, textAndJson } from './kernel_js_common.mjs'

const requestFd = 3
const replyFd = 4
/** Frames in these places are the kernel's (or the event loop's), not the user's. */
const kernelLocations = [new URL('.', import.meta.url).href, 'node:vm:', 'processTicksAndRejections (node:internal/process/task_queues']

let transformer

function loadTransformer() {
  transformer ??= import('./js_transform.mjs')
  return transformer
}

function send(message) {
  const bytes = Buffer.from(`${JSON.stringify(message)}\n`)
  let offset = 0
  while (offset < bytes.length) {
    try {
      offset += fs.writeSync(replyFd, bytes, offset)
    } catch (error) {
      if (error?.code !== 'EAGAIN') throw error
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1)
    }
  }
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

function serveRequests() {
  let queue = Promise.resolve()
  const readRequests = requestReader((text) => process.stderr.write(text))
  const input = fs.createReadStream(null, { fd: requestFd, encoding: 'utf8' })
  input.on('data', (chunk) => {
    for (const request of readRequests(chunk)) {
      // runCell reports every error of the user's; one escaping it means fd 4 is gone
      queue = queue.then(() => runner.runCell(request)).catch(() => process.exit(1))
    }
  })
  // the executor is gone
  input.on('end', () => process.exit(0))
  input.on('error', () => process.exit(1))
}

silenceKernelWarnings()
process.on('uncaughtException', reportUncaught)
process.on('unhandledRejection', reportUncaught)
globalThis.require = createRequire(path.join(process.cwd(), '[notebook]'))
serveRequests()
send({ type: 'ready' })
setImmediate(loadTransformer)
