/**
 * The Node kernel (executor/kernel_node.mjs) spoken to over its fds 3 and 4 as the executor
 * does, with a throwaway workspace holding a package and a CommonJS file to import.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

const kernelPath = fileURLToPath(new URL('../executor/kernel_node.mjs', import.meta.url))

interface CellError {
  name: string
  message: string
  traceback: string
}

interface Display {
  data: Record<string, string>
  executeResult: boolean
}

interface CellResult {
  ok: boolean
  error?: CellError
  displays: Display[]
  /** `text/plain` of the execute result, if the cell showed one. */
  value?: string
  stdout: string
  stderr: string
  /** How much stdout had arrived when `done` did. */
  stdoutAtDone: number
}

interface Reply {
  id?: number
  type: string
  ok?: boolean
  error?: CellError
  data?: Record<string, string>
  executeResult?: boolean
}

/**
 * The executor's side of one kernel: listens where the kernel connects for each cell (an abstract
 * unix socket), sends a cell on the kernel's newest connection, collects what the cell produced
 * and closes the connection at `done`, as executor.py does.
 */
class KernelClient {
  stdout = ''
  stderr = ''
  private nextId = 1
  private readonly waiting = new Map<number, (reply: Reply) => void>()
  private readonly displays = new Map<number, Display[]>()
  /** Connections the kernel made (it is ready for a cell on each), and runs waiting for one. */
  private readonly idle: Socket[] = []
  private readonly wanted: ((socket: Socket) => void)[] = []
  private readonly server: Server
  readonly ready: Promise<void>
  readonly child: ChildProcess

  constructor(cwd: string) {
    const channel = `codebox-kernel-test-${randomBytes(8).toString('hex')}`
    this.server = createServer((socket) => this.accept(socket)).listen(`\0${channel}`)
    this.child = spawn(process.execPath, [kernelPath], {
      cwd,
      env: { ...process.env, CODEBOX_KERNEL_CHANNEL: channel },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.ready = this.connection().then((socket) => void this.idle.unshift(socket))
    this.child.stdout?.setEncoding('utf8').on('data', (text: string) => (this.stdout += text))
    this.child.stderr?.setEncoding('utf8').on('data', (text: string) => (this.stderr += text))
  }

  /** A connection is the kernel saying it is ready for a cell. */
  private accept(socket: Socket): void {
    let buffered = ''
    socket.setEncoding('utf8').on('data', (text: string) => {
      buffered += text
      let newline
      while ((newline = buffered.indexOf('\n')) !== -1) {
        const reply = JSON.parse(buffered.slice(0, newline)) as Reply
        buffered = buffered.slice(newline + 1)
        this.receive(reply)
        if (reply.type === 'done') socket.destroy()
      }
    })
    socket.on('error', () => {})
    const next = this.wanted.shift()
    if (next) next(socket)
    else this.idle.push(socket)
  }

  private connection(): Promise<Socket> {
    const socket = this.idle.shift()
    return socket ? Promise.resolve(socket) : new Promise((resolve) => this.wanted.push(resolve))
  }

  private receive(reply: Reply): void {
    if (reply.type === 'display' && reply.id !== undefined) {
      this.displays.get(reply.id)?.push({ data: reply.data ?? {}, executeResult: reply.executeResult ?? false })
    } else if (reply.type === 'done' && reply.id !== undefined) this.waiting.get(reply.id)?.(reply)
  }

  /** Runs one cell; output counts as the cell's when it arrives up to shortly after `done`. */
  async run(code: string, language: 'javascript' | 'typescript' = 'javascript'): Promise<CellResult> {
    const id = this.nextId++
    const stdoutStart = this.stdout.length
    const stderrStart = this.stderr.length
    this.displays.set(id, [])
    const done = new Promise<Reply>((resolve) => this.waiting.set(id, resolve))
    ;(await this.connection()).write(`${JSON.stringify({ id, code, language })}\n`)
    const reply = await done
    const stdoutAtDone = this.stdout.length - stdoutStart
    await delay(30)
    const displays = this.displays.get(id) ?? []
    return {
      ok: reply.ok === true,
      error: reply.error,
      displays,
      value: displays.find((display) => display.executeResult)?.data['text/plain'],
      stdout: this.stdout.slice(stdoutStart),
      stderr: this.stderr.slice(stderrStart),
      stdoutAtDone,
    }
  }

  /** Runs a cell that must succeed and returns its shown value. */
  async value(code: string, language: 'javascript' | 'typescript' = 'javascript'): Promise<string | undefined> {
    const result = await this.run(code, language)
    assert.equal(result.ok, true, `cell failed: ${JSON.stringify(result.error)}`)
    return result.value
  }

  close(): void {
    this.child.kill('SIGKILL')
    this.server.close()
  }
}

let workspace = ''

before(async () => {
  workspace = await mkdtemp(path.join(tmpdir(), 'codebox-kernel-node-'))
  // a package that only an `import` can load, as many ESM-only packages are
  const esmOnly = path.join(workspace, 'node_modules', 'esm-only')
  await mkdir(esmOnly, { recursive: true })
  await writeFile(path.join(esmOnly, 'package.json'), JSON.stringify({ name: 'esm-only', type: 'module', exports: { import: './index.js' } }))
  await writeFile(path.join(esmOnly, 'index.js'), 'export default "esm default"\nexport const named = "esm named"\n')
  await writeFile(path.join(workspace, 'helper.cjs'), 'module.exports = { twice: (n) => n * 2 }\n')
  await writeFile(path.join(workspace, 'local.mjs'), 'export const local = "local value"\n')
})

after(async () => {
  await rm(workspace, { recursive: true, force: true })
})

describe('node kernel', () => {
  let kernel: KernelClient

  before(async () => {
    kernel = new KernelClient(workspace)
    await kernel.ready
  })

  after(() => kernel.close())

  it('keeps state across cells in the global scope', async () => {
    assert.equal(await kernel.value('const x = 1'), undefined)
    assert.equal(await kernel.value('x + 1'), '2')
    assert.equal(await kernel.value('globalThis.x'), '1')
    assert.equal(await kernel.value('process.cwd()'), `'${workspace}'`)
  })

  it('lets a later cell declare const, let, class and function again', async () => {
    await kernel.value('const c = 1; let l = 1; class K { n = 1 }; function f() { return 1 }')
    assert.equal(await kernel.value('const c = 2; let l = 2; class K { n = 2 }; function f() { return 2 }\n[c, l, new K().n, f()]'), '[ 2, 2, 2, 2 ]')
    assert.equal(await kernel.value('let l\nl'), undefined)
  })

  it('hoists functions within a cell and shares them with later cells', async () => {
    assert.equal(await kernel.value('const early = later()\nfunction later() { return "hoisted" }\nearly'), "'hoisted'")
    assert.equal(await kernel.value('later()'), "'hoisted'")
  })

  it('declares destructured names and nested vars as globals', async () => {
    await kernel.value('const {a, b: [c, ...rest], d = 4, ...others} = {a: 1, b: [2, 3, 4], e: 5}')
    assert.equal(await kernel.value('[a, c, rest, d, others]'), '[ 1, 2, [ 3, 4 ], 4, { e: 5 } ]')
    await kernel.value('if (true) { var nested = "yes" }\nfor (var i = 0; i < 3; i++) {}\nfor (var key in {k: 1}) {}')
    assert.equal(await kernel.value('[nested, i, key]'), "[ 'yes', 3, 'k' ]")
  })

  it('supports top-level await', async () => {
    assert.equal(await kernel.value('await new Promise((resolve) => setTimeout(resolve, 10))\nconst answer = await Promise.resolve(42)\nanswer'), '42')
    assert.equal(await kernel.value('for await (const n of (async function* () { yield 1; yield 2 })()) console.log(n)'), undefined)
  })

  it('shows the value of a last expression, as text and as JSON for plain data', async () => {
    const result = await kernel.run('({list: [1, 2], nested: {deep: true}})')
    assert.deepEqual(result.displays, [
      {
        data: { 'text/plain': '{ list: [ 1, 2 ], nested: { deep: true } }', 'application/json': '{"list":[1,2],"nested":{"deep":true}}' },
        executeResult: true,
      },
    ])
    assert.equal(await kernel.value('{a: 1}'), '{ a: 1 }')
    assert.deepEqual((await kernel.run('new Map([[1, 2]])')).displays[0]?.data, { 'text/plain': 'Map(1) { 1 => 2 }' })
    assert.equal(await kernel.value('Promise.resolve(1)'), 'Promise { 1 }')
    assert.equal(await kernel.value('"text" // a comment'), "'text'")
  })

  it('shows nothing for undefined, declarations and statements', async () => {
    for (const code of ['undefined', 'console.log("printed")', 'const shown = 1', 'if (true) { 5 }']) {
      const result = await kernel.run(code)
      assert.equal(result.ok, true)
      assert.deepEqual(result.displays, [], code)
    }
  })

  it('prints with console.log as Node does', async () => {
    const result = await kernel.run('console.log({a: [1, {b: 2}]}, "s", 3)\nconsole.error("to stderr")')
    assert.equal(result.stdout, '{ a: [ 1, { b: 2 } ] } s 3\n')
    assert.equal(result.stderr, 'to stderr\n')
  })

  it('turns static imports into imports resolved from the workspace', async () => {
    const code = [
      'import fs, { readFileSync } from "node:fs"',
      "import esm, { named as alias } from 'esm-only'",
      'import * as local from "./local.mjs"',
      '[typeof fs.statSync, typeof readFileSync, esm, alias, local.local]',
    ].join('\n')
    assert.equal(await kernel.value(code), "[ 'function', 'function', 'esm default', 'esm named', 'local value' ]")
    assert.equal(await kernel.value('alias'), "'esm named'")
  })

  it('has require, resolving from the workspace', async () => {
    assert.equal(await kernel.value('require("./helper.cjs").twice(21)'), '42')
    assert.equal(await kernel.value('const os = require("node:os"); typeof os.cpus'), "'function'")
  })

  it('keeps its own state out of the global scope', async () => {
    assert.equal(
      await kernel.value('[typeof cells, typeof runCell, typeof send, typeof transformCell]'),
      "[ 'undefined', 'undefined', 'undefined', 'undefined' ]",
    )
  })

  it('runs TypeScript with its types removed', async () => {
    const code = [
      "import type { Stats } from 'node:fs'",
      "import { type Dirent, statSync } from 'node:fs'",
      'interface Point { x: number; y: number }',
      'type Pair<T> = [T, T]',
      'function pair<T>(value: T): Pair<T> { return [value, value] }',
      'const p: Point = { x: 1, y: 2 } satisfies Point',
      'const stats = statSync(".") as Stats',
      'let entry: Dirent | undefined',
      'pair<number>(p.x + p.y)',
    ].join('\n')
    assert.equal(await kernel.value(code, 'typescript'), '[ 3, 3 ]')
    assert.equal(await kernel.value('const typed: string = "again"; typed', 'typescript'), "'again'")
  })

  it('runs TypeScript enums, namespaces and parameter properties', async () => {
    const code =
      'enum Color { Red, Green }\nnamespace Shapes { export const sides = 4 }\nclass Box { constructor(public size: number) {} }\n[Color.Green, Color[0], Shapes.sides, new Box(3).size]'
    assert.equal(await kernel.value(code, 'typescript'), "[ 1, 'Red', 4, 3 ]")
    assert.equal(await kernel.value('Color.Red'), '0')
  })

  it('points errors in transformed TypeScript at the line the user wrote', async () => {
    const result = await kernel.run('enum E { A }\n\n\nfunction fail(): never {\n  throw new Error("from ts")\n}\nfail()', 'typescript')
    assert.equal(result.error?.message, 'from ts')
    assert.match(result.error?.traceback ?? '', /at fail \(cell\[\d+\]:5:\d+\)/)
    assert.match(result.error?.traceback ?? '', /at cell\[\d+\]:7:1$/)
  })

  it('reports a syntax error with its place', async () => {
    const result = await kernel.run('const ok = 1\nlet broken = = 2')
    assert.equal(result.ok, false)
    assert.equal(result.error?.name, 'SyntaxError')
    assert.equal(result.error?.message, 'Unexpected token (2:14)')
    assert.match(result.error?.traceback ?? '', /^cell\[\d+\]:2\nlet broken = = 2\n {13}\^\n/)
    const typed = await kernel.run('const a: number = 1\nconst b: = 2', 'typescript')
    assert.equal(typed.error?.name, 'SyntaxError')
    assert.match(typed.error?.message ?? '', /\(2:\d+\)$/)
  })

  it('reports a thrown error with a traceback of the user’s frames', async () => {
    const result = await kernel.run('function inner() {\n  throw new TypeError("bad value")\n}\nconst before = 1\ninner()')
    assert.equal(result.ok, false)
    assert.equal(result.error?.name, 'TypeError')
    assert.equal(result.error?.message, 'bad value')
    const traceback = result.error?.traceback ?? ''
    assert.match(traceback, /^TypeError: bad value\n {4}at inner \(cell\[\d+\]:2:9\)\n {4}at cell\[\d+\]:5:1$/)
    assert.doesNotMatch(traceback, /kernel_node|js_transform|node:vm|task_queues/)
  })

  it('reports an error from an awaited promise and keeps the error’s properties', async () => {
    const rejected = await kernel.run('async function load() {\n  await null\n  throw new RangeError("later")\n}\nawait load()')
    assert.equal(rejected.error?.name, 'RangeError')
    assert.match(rejected.error?.traceback ?? '', /at load \(cell\[\d+\]:3:9\)\n {4}at async cell\[\d+\]:5:1$/)
    const missing = await kernel.run('fs.readFileSync("no-such-file")')
    assert.match(missing.error?.traceback ?? '', /at cell\[\d+\]:1:4 \{\n {2}errno: -2,\n {2}code: 'ENOENT'/)
  })

  it('reports a thrown non-error', async () => {
    const result = await kernel.run('throw 42')
    assert.deepEqual(result.error, { name: 'Uncaught', message: '42', traceback: 'Uncaught 42' })
    assert.equal((await kernel.run('throw {code: "E"}')).error?.message, "{ code: 'E' }")
  })

  it('survives errors that surface after a cell has finished', async () => {
    const result = await kernel.run('setTimeout(() => { throw new Error("from a timer") }, 5)\nPromise.reject(new Error("unhandled"))\n"finished"')
    assert.equal(result.ok, true)
    assert.equal(result.value, "'finished'")
    await delay(50)
    assert.match(kernel.stderr, /Uncaught Error: unhandled\n {4}at cell\[\d+\]:2:16/)
    assert.match(kernel.stderr, /Uncaught Error: from a timer\n {4}at Timeout._onTimeout \(cell\[\d+\]:1:26\)/)
    assert.equal(await kernel.value('"still serving"'), "'still serving'")
  })

  it('delivers all output before done, even into a slow reader', async () => {
    const size = 2 * 1024 * 1024
    kernel.child.stdout?.pause()
    setTimeout(() => kernel.child.stdout?.resume(), 200)
    const result = await kernel.run(`console.log("x".repeat(${size - 1}))`)
    // stdout and the replies are two pipes: what is still in the stdout pipe when done arrives
    // was written before it, so it is at most a pipe's capacity
    assert.ok(result.stdoutAtDone >= size - 256 * 1024, `only ${result.stdoutAtDone} bytes had arrived at done`)
    const deadline = Date.now() + 5000
    while (kernel.stdout.length < size && Date.now() < deadline) await delay(10)
    assert.equal(kernel.stdout.slice(-size), `${'x'.repeat(size - 1)}\n`)
  })

  it('writes no warnings of its own into the user’s stderr', async () => {
    const fresh = new KernelClient(workspace)
    try {
      await fresh.ready
      await fresh.value('import { named } from "esm-only"\nconst t: number = 1', 'typescript')
      await fresh.value('enum Fresh { A }', 'typescript')
      await delay(50)
      assert.equal(fresh.stderr, '')
    } finally {
      fresh.close()
    }
  })
})

describe('two node kernels', () => {
  it('start quickly and share no state', async (t) => {
    const started = performance.now()
    const first = new KernelClient(workspace)
    const second = new KernelClient(workspace)
    try {
      await Promise.all([first.ready, second.ready])
      const startMs = performance.now() - started
      t.diagnostic(`two kernels ready in ${startMs.toFixed(0)} ms`)
      assert.ok(startMs < 1000, `kernels took ${startMs} ms to start`)
      await first.value('const only = "first"')
      assert.equal(await first.value('only'), "'first'")
      assert.equal(await second.value('typeof only'), "'undefined'")
    } finally {
      first.close()
      second.close()
    }
  })
})
