// What the two JavaScript kernels, kernel_node.mjs and kernel_deno.mjs, have in common: reading
// requests from the kernel's channel, running a cell rewritten by js_transform.mjs in the global
// scope, the JSON form of a shown value, and errors described with the user's own lines. Each
// kernel brings what its runtime does its own way: how it connects to the executor, how it shows
// a value, which stack frames are its own, and whether output may still be queued when a cell ends.

import vm from 'node:vm'

/** A value shown as JSON when its JSON is at most this long; longer ones only as text. */
const maxJsonDisplayChars = 1024 * 1024

/** Runs a kernel's cells, one at a time, and describes what they throw. */
export class CellRunner {
  /** Cell file name → what maps its stack frames back to the user's lines. */
  #cells = new Map()
  #cellCount = 0
  #runtime
  /** The cell running now, or the last one: `{id, finished, ended, end}`; `finished` once its `done` went out. */
  #current

  /**
   * @param {object} runtime what the kernel's runtime does its own way
   * @param {(message: object) => void} runtime.send writes one message to the current cell's channel
   * @param {(value: unknown) => string} runtime.inspect the value as the runtime shows it; never throws (see neverThrowing)
   * @param {(value: unknown) => Record<string, string>} runtime.displayData the mime bundle of a cell's value
   * @param {() => object | Promise<object>} runtime.loadTransformer js_transform.mjs, or a promise of it
   * @param {string[]} runtime.kernelLocations where stack frames are the kernel's (or the runtime's event loop's), not the user's
   * @param {(value: unknown) => boolean} [runtime.isNativeError] an error that is not `instanceof Error`, such as one of another realm
   * @param {() => Promise<unknown>} [runtime.flushOutput] waits for the user's output the runtime still queues; `done` comes after it
   */
  constructor(runtime) {
    this.#runtime = runtime
  }

  /**
   * Runs a cell and sends its value and `done`; settles once `done` went out, also when an
   * interrupt abandoned the cell's code. Throws only when it cannot send.
   */
  runCell(request) {
    let end
    const cell = { id: request.id, finished: false, ended: new Promise((resolve) => (end = resolve)), end, restoreEnv: setCellEnv(request.env) }
    this.#current = cell
    const work = this.#run(cell, request)
    work.catch(() => {})
    return Promise.race([work, cell.ended])
  }

  async #run(cell, request) {
    const runtime = this.#runtime
    const filename = `cell[${++this.#cellCount}]`
    let compiled = false
    try {
      const script = this.#compileCell(await runtime.loadTransformer(), request, filename)
      compiled = true
      // Interrupted before it started: its `done` went out, and none of its code may run.
      if (cell.finished) return
      const completion = await script.runInThisContext()
      if (cell.finished) return
      if (completion !== undefined && completion.value !== undefined) {
        runtime.send({ id: request.id, type: 'display', data: stringBundle(runtime.displayData(completion.value)), executeResult: true })
      }
      if (runtime.flushOutput) await runtime.flushOutput()
      this.#finish(cell, { ok: true })
    } catch (error) {
      // An abandoned cell that fails later (its await rejected after an interrupt) has nothing left to report.
      if (cell.finished) return
      if (runtime.flushOutput) await runtime.flushOutput()
      const described = compiled ? this.#describeThrown(error) : this.#describeCompileError(error, filename, request)
      this.#finish(cell, { ok: false, error: described })
    }
  }

  /**
   * Ends the running cell now, as Ctrl-C does (the executor's SIGINT on a cancel): it fails with
   * `Interrupted` and the kernel keeps its state. A pending await is abandoned: the cell's code
   * after it runs only if what it awaited settles later. Between cells it does nothing.
   */
  async interrupt() {
    const cell = this.#current
    if (cell === undefined || cell.finished) return
    cell.finished = true
    cell.restoreEnv()
    const message = 'the cell was interrupted; the kernel and its variables are kept'
    if (this.#runtime.flushOutput) await this.#runtime.flushOutput()
    this.#runtime.send({ id: cell.id, type: 'done', ok: false, error: { name: 'Interrupted', message, traceback: `Interrupted: ${message}` } })
    cell.end()
  }

  /** Sends the cell's `done` unless an interrupt already did. */
  #finish(cell, fields) {
    if (cell.finished) return
    cell.finished = true
    cell.restoreEnv()
    this.#runtime.send({ id: cell.id, type: 'done', ...fields })
    cell.end()
  }

  /** The thrown value as the runtime's REPL shows it, with the kernel's frames removed. */
  formatThrown(value) {
    const lines = []
    for (const line of this.#runtime.inspect(value).split('\n')) {
      const frame = /^\s+at /.test(line)
      if (frame && this.#isKernelFrame(line)) {
        // inspect opens the error's own properties at the end of the last frame
        if (line.endsWith(' {') && lines.length > 0) lines[lines.length - 1] += ' {'
        continue
      }
      lines.push(frame ? this.#mapCellLocations(line) : line)
    }
    return lines.join('\n')
  }

  #compileCell({ stripTypes, transformCell }, request, filename) {
    let source = String(request.code ?? '')
    let sourceMap
    if (request.language === 'typescript') ({ code: source, sourceMap } = stripTypes(source))
    const { code, lineCount, originalColumn } = transformCell(source)
    this.#cells.set(filename, { lineCount, originalColumn, sourceMap })
    // a cell's import() resolves as the kernel's own would; Deno's against the working directory (/workspace)
    return new vm.Script(code, {
      filename,
      lineOffset: -1,
      importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
    })
  }

  /** A syntax error of the cell, shown as V8 shows one: the line, a caret under the place, the message. */
  #describeCompileError(error, filename, request) {
    if (!(error instanceof SyntaxError) || typeof error.line !== 'number') return this.#describeThrown(error)
    const sourceLine = String(request.code ?? '').split('\n')[error.line - 1] ?? ''
    const message = `${error.message} (${error.line}:${error.column})`
    const caret = `${' '.repeat(Math.max(0, error.column - 1))}^`
    return { name: 'SyntaxError', message, traceback: `${filename}:${error.line}\n${sourceLine}\n${caret}\n\nSyntaxError: ${message}` }
  }

  /** `{name, message, traceback}` of anything thrown, even of errors whose getters throw. */
  #describeThrown(error) {
    try {
      if (error instanceof Error || this.#runtime.isNativeError?.(error)) {
        return { name: String(error.name ?? 'Error'), message: String(error.message ?? ''), traceback: this.formatThrown(error) }
      }
    } catch {
      // described below as an unknown value
    }
    const text = this.#runtime.inspect(error)
    return { name: 'Uncaught', message: text, traceback: `Uncaught ${text}` }
  }

  #isKernelFrame(line) {
    if (this.#runtime.kernelLocations.some((location) => line.includes(location))) return true
    const match = /\b(cell\[\d+\]):(\d+):\d+/.exec(line)
    if (!match) return false
    const cell = this.#cells.get(match[1])
    const lineNumber = Number(match[2])
    // line 0 is the prelude, the line after the user's code is the call of the cell's function
    return cell !== undefined && (lineNumber < 1 || lineNumber > cell.lineCount)
  }

  #mapCellLocations(line) {
    return line.replace(/\b(cell\[\d+\]):(\d+):(\d+)/g, (whole, name, lineText, columnText) => {
      const cell = this.#cells.get(name)
      if (!cell) return whole
      const lineNumber = Number(lineText)
      const column = cell.originalColumn(lineNumber, Number(columnText))
      // a TypeScript cell that needed transforming: its own source map leads back to the user's code
      const entry = cell.sourceMap?.findEntry(lineNumber - 1, column - 1)
      if (entry?.originalLine === undefined) return `${name}:${lineNumber}:${column}`
      return `${name}:${entry.originalLine + 1}:${entry.originalColumn + 1}`
    })
  }
}

/**
 * Sets a cell's own environment variables (the executor checked them: names to strings) in
 * `process.env` for the time the cell runs; returns what puts back the values they replaced.
 * @param {unknown} env
 * @returns {() => void}
 */
function setCellEnv(env) {
  const target = globalThis.process?.env
  if (env === null || typeof env !== 'object' || target === undefined) return () => {}
  const saved = new Map()
  for (const [name, value] of Object.entries(env)) {
    if (typeof value !== 'string') continue
    saved.set(name, Object.prototype.hasOwnProperty.call(target, name) ? target[name] : undefined)
    target[name] = value
  }
  return () => {
    for (const [name, value] of saved) {
      if (value === undefined) delete target[name]
      else target[name] = value
    }
  }
}

/**
 * `inspect` made safe to call on anything: a value whose inspection throws is shown by its tag.
 * @param {(value: unknown) => string} inspect
 * @returns {(value: unknown) => string}
 */
export function neverThrowing(inspect) {
  return (value) => {
    try {
      return inspect(value)
    } catch {
      return String(Object.prototype.toString.call(value))
    }
  }
}

/**
 * The mime bundle of a shown value: its text, and its JSON too when it is a plain object or an
 * array whose JSON is not too long.
 * @param {unknown} value
 * @param {string} text the value as the runtime shows it
 * @returns {Record<string, string>}
 */
export function textAndJson(value, text) {
  const data = { 'text/plain': text }
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

/**
 * A mime bundle with string values only: a Jupyter display method may return numbers, objects
 * or null, which have no place in a result. Never throws.
 * @param {unknown} bundle
 * @returns {Record<string, string>}
 */
export function stringBundle(bundle) {
  const data = {}
  try {
    for (const [mime, value] of Object.entries(bundle ?? {})) {
      if (typeof value === 'string') data[mime] = value
    }
  } catch {
    // a proxy or getter that throws: what was read so far
  }
  return data
}

/**
 * Turns the text read from the channel into requests, one JSON object a line.
 * @param {(text: string) => void} reportError writes a line to the kernel's stderr
 * @returns {(chunk: string) => Generator<object>} feeds a chunk in and yields, one at a time, the requests it completes
 */
export function requestReader(reportError) {
  let buffered = ''
  return function* (chunk) {
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
        reportError(`kernel: request is not JSON: ${line.slice(0, 200)}\n`)
        continue
      }
      yield request
    }
  }
}
