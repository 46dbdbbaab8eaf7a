// The JavaScript and TypeScript notebook kernel. The executor starts it inside the sandbox and
// speaks the "Executor ↔ kernel" protocol of docs/executor-protocol.md: cells arrive as JSON
// lines on fd 3, displays and `done` go back as JSON lines on fd 4, and the user's output goes
// to the real fd 1 and 2. Cells run one at a time in the global scope of this process.

import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import util from 'node:util'
import vm from 'node:vm'

const requestFd = 3
const replyFd = 4
/** A value shown as JSON when its JSON is at most this long; longer ones only as text. */
const maxJsonDisplayChars = 1024 * 1024
/** Frames in these places are the kernel's (or the event loop's), not the user's. */
const kernelLocations = [new URL('.', import.meta.url).href, 'node:vm:', 'processTicksAndRejections (node:internal/process/task_queues']

/** Cell file name → what maps its stack frames back to the user's lines. */
const cells = new Map()
let cellCount = 0
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

async function runCell(request) {
  const filename = `cell[${++cellCount}]`
  let compiled = false
  try {
    const script = await compileCell(request, filename)
    compiled = true
    const completion = await script.runInThisContext()
    if (completion !== undefined && completion.value !== undefined) {
      send({ id: request.id, type: 'display', data: displayData(completion.value), executeResult: true })
    }
    await flushOutput()
    send({ id: request.id, type: 'done', ok: true })
  } catch (error) {
    await flushOutput()
    const described = compiled ? describeThrown(error) : describeCompileError(error, filename, request)
    send({ id: request.id, type: 'done', ok: false, error: described })
  }
}

async function compileCell(request, filename) {
  const { stripTypes, transformCell } = await loadTransformer()
  let source = String(request.code ?? '')
  let sourceMap
  if (request.language === 'typescript') ({ code: source, sourceMap } = stripTypes(source))
  const { code, lineCount, originalColumn } = transformCell(source)
  cells.set(filename, { lineCount, originalColumn, sourceMap })
  return new vm.Script(code, {
    filename,
    lineOffset: -1,
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  })
}

function displayData(value) {
  const data = { 'text/plain': util.inspect(value, { colors: false, depth: 4 }) }
  try {
    const prototype = value !== null && typeof value === 'object' ? Object.getPrototypeOf(value) : undefined
    if (Array.isArray(value) || prototype === Object.prototype || prototype === null) {
      const json = JSON.stringify(value)
      if (json !== undefined && json.length <= maxJsonDisplayChars) data['application/json'] = json
    }
  } catch {
    // circular, holds a BigInt, or a proxy that refuses: text only
  }
  return data
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

/** A syntax error of the cell, shown as V8 shows one: the line, a caret under the place, the message. */
function describeCompileError(error, filename, request) {
  if (!(error instanceof SyntaxError) || typeof error.line !== 'number') return describeThrown(error)
  const sourceLine = String(request.code ?? '').split('\n')[error.line - 1] ?? ''
  const message = `${error.message} (${error.line}:${error.column})`
  const caret = `${' '.repeat(Math.max(0, error.column - 1))}^`
  return { name: 'SyntaxError', message, traceback: `${filename}:${error.line}\n${sourceLine}\n${caret}\n\nSyntaxError: ${message}` }
}

/** `{name, message, traceback}` of anything thrown, even of errors whose getters throw. */
function describeThrown(error) {
  try {
    if (error instanceof Error || util.types.isNativeError(error)) {
      return { name: String(error.name ?? 'Error'), message: String(error.message ?? ''), traceback: formatThrown(error) }
    }
  } catch {
    // described below as an unknown value
  }
  const text = safeInspect(error)
  return { name: 'Uncaught', message: text, traceback: `Uncaught ${text}` }
}

/** The thrown value as the REPL shows it, with the kernel's frames removed. */
function formatThrown(value) {
  const text = safeInspect(value)
  const lines = []
  for (const line of text.split('\n')) {
    const frame = /^\s+at /.test(line)
    if (frame && isKernelFrame(line)) {
      // util.inspect opens the error's own properties at the end of the last frame
      if (line.endsWith(' {') && lines.length > 0) lines[lines.length - 1] += ' {'
      continue
    }
    lines.push(frame ? mapCellLocations(line) : line)
  }
  return lines.join('\n')
}

function isKernelFrame(line) {
  if (kernelLocations.some((location) => line.includes(location))) return true
  const match = /\b(cell\[\d+\]):(\d+):\d+/.exec(line)
  if (!match) return false
  const cell = cells.get(match[1])
  const lineNumber = Number(match[2])
  // line 0 is the prelude, the line after the user's code is the call of the cell's function
  return cell !== undefined && (lineNumber < 1 || lineNumber > cell.lineCount)
}

function mapCellLocations(line) {
  return line.replace(/\b(cell\[\d+\]):(\d+):(\d+)/g, (whole, name, lineText, columnText) => {
    const cell = cells.get(name)
    if (!cell) return whole
    const lineNumber = Number(lineText)
    const column = cell.originalColumn(lineNumber, Number(columnText))
    // a TypeScript cell that needed transforming: its own source map leads back to the user's code
    const entry = cell.sourceMap?.findEntry(lineNumber - 1, column - 1)
    if (entry?.originalLine === undefined) return `${name}:${lineNumber}:${column}`
    return `${name}:${entry.originalLine + 1}:${entry.originalColumn + 1}`
  })
}

function safeInspect(value) {
  try {
    return util.inspect(value, { colors: false, depth: 4 })
  } catch {
    return String(Object.prototype.toString.call(value))
  }
}

function reportUncaught(value) {
  try {
    process.stderr.write(`Uncaught ${formatThrown(value)}\n`)
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
  let buffered = ''
  const input = fs.createReadStream(null, { fd: requestFd, encoding: 'utf8' })
  input.on('data', (chunk) => {
    buffered += chunk
    let newline
    while ((newline = buffered.indexOf('\n')) !== -1) {
      const line = buffered.slice(0, newline)
      buffered = buffered.slice(newline + 1)
      if (line.trim() === '') continue
      let request
      try {
        request = JSON.parse(line)
      } catch {
        process.stderr.write(`kernel: request is not JSON: ${line.slice(0, 200)}\n`)
        continue
      }
      // runCell reports every error of the user's; one escaping it means fd 4 is gone
      queue = queue.then(() => runCell(request)).catch(() => process.exit(1))
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
