/**
 * E2B's code interpreter door (apis/e2b/code.ts) driven by the unmodified `@e2b/code-interpreter`
 * SDK against real bwrap sessions: state across runCode calls, a created context with its own
 * state and working directory, JavaScript, a matplotlib chart, an error with its traceback,
 * stdout/stderr streamed in order before the result, env vars for one cell, a client timeout that
 * interrupts the cell and keeps the kernel, bash cells and contexts (a persistent shell), and the
 * contexts API.
 *
 * The SDK is pointed at a Fastify app of this test's own, not the whole server: it registers
 * codeRoutes under `/e2b/code` with deps whose sandboxOf finds the session named by
 * `E2b-Sandbox-Id`; a minimal control-plane stub answers Sandbox.create (`POST /v2/sandboxes`,
 * the session's id) and kill; and a rewriteUrl sends `E2b-Sandbox-Port: 49999` requests to
 * `/e2b/code`. The real server's routing and auth (app.ts, apis/e2b/index.ts) do this for real.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Sandbox, type Execution } from '@e2b/code-interpreter'
import { CodeboxError } from '@codebox/core'
import Fastify, { type FastifyInstance } from 'fastify'
import type { RunningServer } from '@codebox/server'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'
import { codeRoutes } from '../src/apis/e2b/code.ts'
import type { E2bDeps } from '../src/apis/e2b/deps.ts'
import { parseJsonBody, readBody } from '../src/http/body.ts'
import { sendError } from '../src/http/errors.ts'
import { realServer } from './fixtures.ts'

const unavailable = await bwrapUnavailable()
const caller = { tenant: 'default' }

/** The test's app: the code interpreter's routes, the stub control plane and the port rewrite. */
async function e2bApp(server: RunningServer): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify({
    // As app.ts: closing ends keep-alive connections (an aborted stream's among them) at once.
    forceCloseConnections: true,
    rewriteUrl: (req) => (req.headers['e2b-sandbox-port'] === '49999' ? `/e2b/code${req.url ?? '/'}` : (req.url ?? '/')),
  })
  app.setErrorHandler((error, request, reply) => sendError(request, reply, error))
  // JSON bodies as the real app reads them (app.ts): bounded, and an empty body is no body.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/json', async (request: { raw: IncomingMessage }) =>
    parseJsonBody((await readBody(request.raw, { maxBytes: 8 << 20, idleTimeoutMs: 10_000 })).toString('utf8')),
  )
  const deps: E2bDeps = {
    sessions: server.sessions,
    async sandboxOf(request) {
      const id = request.headers['e2b-sandbox-id']
      if (typeof id !== 'string') throw new CodeboxError('NotFound', 'no E2b-Sandbox-Id header')
      return { caller, sessionId: id, session: await server.sessions.live(caller, id), envs: async () => ({}) }
    },
  }
  await app.register(async (scope) => codeRoutes(scope, deps), { prefix: '/e2b/code' })
  app.post('/v2/sandboxes', async (_request, reply) => {
    const { info } = await server.sessions.start(caller, { interpreterId: 'codebox.v1' })
    return reply.code(201).send({ sandboxID: info.sessionId, templateID: 'code-interpreter-v1', clientID: 'codebox', envdVersion: '0.4.0' })
  })
  app.delete<{ Params: { id: string } }>('/sandboxes/:id', async (request, reply) => {
    await server.sessions.stop(caller, request.params.id)
    return reply.code(204).send()
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, url: `http://127.0.0.1:${(app.server.address() as { port: number }).port}` }
}

describe('E2B code interpreter with @e2b/code-interpreter', { skip: unavailable }, () => {
  let work: string
  let server: RunningServer
  let app: FastifyInstance
  let sbx: Sandbox

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'codebox-e2b-code-'))
    server = await realServer(work)
    const e2b = await e2bApp(server)
    app = e2b.app
    sbx = await Sandbox.create({ apiKey: 'e2b_test', apiUrl: e2b.url, sandboxUrl: e2b.url, requestTimeoutMs: 60_000 })
  })
  after(async () => {
    await sbx?.kill().catch(() => {})
    await app?.close()
    await server?.close()
    await rm(work, { recursive: true, force: true })
  })

  it('keeps state across runCode calls; the last expression is the main result', async () => {
    const first = await sbx.runCode('x = 20\nprint("set")')
    assert.deepEqual(first.logs, { stdout: ['set\n'], stderr: [] })
    assert.equal(first.results.length, 0)
    const second = await sbx.runCode('x + 22')
    assert.equal(second.text, '42')
    assert.equal(second.results[0]?.isMainResult, true)
    assert.equal(second.error, undefined)
    assert.ok(second.executionCount !== undefined && first.executionCount !== undefined && second.executionCount > first.executionCount)
    // Audited as the native API's executeCode is.
    const audit = await server.store.audit.list({ tenant: 'default', sessionId: sbx.sandboxId, limit: 100 })
    const cells = audit.items.filter((e) => e.action === 'executeCode' && e.language === 'python' && e.outcome === 'ok')
    assert.ok(cells.length >= 2, JSON.stringify(audit.items))
  })

  it('a created context has its own state and working directory', async () => {
    await sbx.runCode('import os\nos.makedirs("proj", exist_ok=True)\ny = "default"')
    const ctx = await sbx.createCodeContext({ language: 'python', cwd: '/home/user/proj' })
    assert.equal(ctx.language, 'python')
    assert.equal(ctx.cwd, '/home/user/proj')
    const cwd = await sbx.runCode('import os\nos.getcwd()', { context: ctx })
    assert.equal(cwd.text, "'/workspace/proj'")
    const missing = await sbx.runCode('y', { context: ctx })
    assert.equal(missing.error?.name, 'NameError')
    await sbx.runCode('y = "ctx"', { context: ctx })
    assert.equal((await sbx.runCode('y', { context: ctx })).text, "'ctx'")
    assert.equal((await sbx.runCode('y')).text, "'default'")
    const listed = await sbx.listCodeContexts()
    assert.ok(
      listed.some((c) => c.id === ctx.id && c.cwd === '/home/user/proj'),
      JSON.stringify(listed),
    )
    assert.ok(listed.some((c) => c.id === 'python'))
    await sbx.restartCodeContext(ctx)
    assert.equal((await sbx.runCode('y', { context: ctx })).error?.name, 'NameError')
    await sbx.removeCodeContext(ctx)
    // A short requestTimeoutMs: the SDK leaves that timer running when the answer is an HTTP error.
    await assert.rejects(sbx.runCode('1', { context: ctx, requestTimeoutMs: 2000 }), (e: Error) => e.name === 'NotFoundError')
  })

  it('runs javascript and typescript with state; objects come back as json', async () => {
    await sbx.runCode('const base = 40', { language: 'javascript' })
    const r = await sbx.runCode('({ sum: base + 2 })', { language: 'javascript' })
    assert.deepEqual(r.results[0]?.json, { sum: 42 })
    assert.equal(r.results[0]?.isMainResult, true)
    const ts = await sbx.runCode('const n: number = 2\nn * 3', { language: 'typescript' })
    assert.equal(ts.text, '6')
    const err = await sbx.runCode('null.x', { language: 'javascript' })
    assert.equal(err.error?.name, 'TypeError')
  })

  it('returns a matplotlib figure as png with its chart data', async () => {
    const code = [
      'import matplotlib.pyplot as plt',
      'plt.plot([1, 2, 3], [2, 4, 8], label="growth")',
      'plt.title("Growth")',
      'plt.xlabel("Day (d)")',
      'plt.show()',
      'plt.figure()',
      'plt.bar(["a", "b"], [3, 5])',
      'plt.show()',
      'plt.figure()',
      'plt.pie([1, 3], labels=["small", "big"])',
      'plt.show()',
    ].join('\n')
    const r = await sbx.runCode(code)
    assert.equal(r.error, undefined, r.error?.traceback)
    assert.equal(r.results.length, 3)
    const [line, bar, pie] = r.results
    assert.ok(line?.png && Buffer.from(line.png, 'base64').subarray(1, 4).toString() === 'PNG')
    assert.equal(line.isMainResult, false)
    const chart = line.chart as unknown as Record<string, unknown>
    assert.equal(chart.type, 'line')
    assert.equal(chart.title, 'Growth')
    assert.equal(chart.x_unit, 'd')
    assert.deepEqual(chart.elements, [
      {
        label: 'growth',
        points: [
          [1, 2],
          [2, 4],
          [3, 8],
        ],
      },
    ])
    const barChart = bar?.chart as unknown as Record<string, unknown>
    assert.equal(barChart.type, 'bar')
    assert.deepEqual(
      (barChart.elements as { label: string; value: number }[]).map((e) => [e.label, e.value]),
      [
        ['a', 3],
        ['b', 5],
      ],
    )
    const pieChart = pie?.chart as unknown as { type: string; elements: { label: string; angle: number; radius: number }[] }
    assert.equal(pieChart.type, 'pie')
    assert.deepEqual(
      pieChart.elements.map((e) => [e.label, Math.round(e.angle), e.radius]),
      [
        ['small', 90, 1],
        ['big', 270, 1],
      ],
    )
  })

  it('returns a DataFrame as html and text with its columns as data, missing values null', async () => {
    const run = await sbx.runCode('import pandas as pd\npd.DataFrame({"a": [1, 2, None], "b": ["x", "y", "z"], "when": pd.to_datetime(["2026-01-02"] * 3)})')
    assert.equal(run.error, undefined, run.error?.traceback)
    const df = run.results[0]!
    assert.match(df.html ?? '', /<table/)
    assert.match(df.text ?? '', /2026-01-02/)
    assert.deepEqual(df.data, { a: [1, 2, null], b: ['x', 'y', 'z'], when: ['2026-01-02 00:00:00', '2026-01-02 00:00:00', '2026-01-02 00:00:00'] })
    const big = await sbx.runCode('pd.DataFrame({"n": range(200_000)})')
    assert.equal(big.results[0]?.data, undefined, 'a DataFrame over 100,000 cells has no data')
    const shown = await sbx.runCode('display(pd.DataFrame({"k": [True]}))\nNone')
    assert.deepEqual(shown.results[0]?.data, { k: [true] }, 'display() too')
  })

  it('reports an error with its name, value and traceback, not as stderr', async () => {
    const seen: string[] = []
    const r = await sbx.runCode('def f():\n    return 1 / 0\nf()', { onError: (e) => void seen.push(e.name) })
    assert.equal(r.error?.name, 'ZeroDivisionError')
    assert.equal(r.error?.value, 'division by zero')
    assert.match(r.error?.traceback ?? '', /line 2, in f[\s\S]*ZeroDivisionError: division by zero/)
    assert.deepEqual(r.logs.stderr, [])
    assert.deepEqual(seen, ['ZeroDivisionError'])
  })

  it('streams stdout and stderr to the callbacks as they come, in order, before the result', async () => {
    const order: string[] = []
    let firstAt = 0
    const started = Date.now()
    // stdout and stderr are two pipes: a pause between writes to different ones fixes their order.
    const code =
      'import sys, time\nprint("one", flush=True)\ntime.sleep(1.5)\nprint("two", file=sys.stderr, flush=True)\ntime.sleep(0.3)\nprint("three")\n"done"'
    const r: Execution = await sbx.runCode(code, {
      onStdout: (m) => {
        firstAt ||= Date.now()
        order.push(`out:${m.line}`)
      },
      onStderr: (m) => void order.push(`err:${m.line}`),
      onResult: (res) => void order.push(`result:${res.text}`),
    })
    const ended = Date.now()
    assert.deepEqual(order, ['out:one\n', 'err:two\n', 'out:three\n', "result:'done'"])
    // "one" arrived while the cell still slept: streamed, not collected at the end.
    assert.ok(ended - firstAt >= 1000, `first stdout ${firstAt - started} ms after the start, the call ended after ${ended - started} ms`)
    assert.deepEqual(r.logs, { stdout: ['one\n', 'three\n'], stderr: ['two\n'] })
  })

  it('sets env vars for one execution only', async () => {
    const r = await sbx.runCode('import os\nos.environ.get("E2B_FLAVOUR")', { envs: { E2B_FLAVOUR: 'mint' } })
    assert.equal(r.text, "'mint'")
    assert.equal((await sbx.runCode('import os\nos.environ.get("E2B_FLAVOUR")')).text, undefined)
    const js = await sbx.runCode('process.env.E2B_FLAVOUR', { language: 'javascript', envs: { E2B_FLAVOUR: 'lime' } })
    assert.equal(js.text, "'lime'")
  })

  it('a client timeout interrupts the cell; the kernel keeps its state', async () => {
    await sbx.runCode('kept = "yes"')
    await assert.rejects(sbx.runCode('import time\ntime.sleep(60)', { timeoutMs: 1500 }), (e: Error) => e.name === 'TimeoutError')
    const r = await sbx.runCode('kept')
    assert.equal(r.text, "'yes'")
  })

  it('runs bash cells in /home/user with env vars; a non-zero status is the error', async () => {
    const r = await sbx.runCode('echo "$GREETING"; pwd; (exit 3)', { language: 'bash', envs: { GREETING: 'hi there' } })
    assert.deepEqual(r.logs.stdout.join(''), 'hi there\n/workspace\n')
    assert.equal(r.error?.name, 'ExitCode')
    assert.equal(r.error?.value, '3')
    assert.equal((await sbx.runCode('echo "${GREETING-unset}"', { language: 'bash' })).logs.stdout.join(''), 'unset\n')
  })

  it('keeps bash state across cells; a bash context has a shell of its own', async () => {
    const first = await sbx.runCode('X=1; cd /tmp; greet() { echo "hi $1"; }', { language: 'bash' })
    assert.equal(first.error, undefined)
    const second = await sbx.runCode('echo "$X"; pwd; greet you', { language: 'bash' })
    assert.deepEqual(second.logs.stdout.join(''), '1\n/tmp\nhi you\n')
    assert.ok(second.executionCount !== undefined && first.executionCount !== undefined && second.executionCount === first.executionCount + 1)
    const ctx = await sbx.createCodeContext({ language: 'bash' })
    assert.equal(ctx.language, 'bash')
    assert.equal(ctx.cwd, '/home/user')
    assert.equal((await sbx.runCode('echo "${X-none}"; pwd; X=ctx', { context: ctx })).logs.stdout.join(''), 'none\n/workspace\n')
    assert.equal((await sbx.runCode('echo "$X"', { context: ctx })).logs.stdout.join(''), 'ctx\n')
    assert.equal((await sbx.runCode('echo "$X"', { language: 'bash' })).logs.stdout.join(''), '1\n')
    assert.ok((await sbx.listCodeContexts()).some((c) => c.id === ctx.id && c.language === 'bash'))
    await sbx.restartCodeContext('bash')
    assert.equal((await sbx.runCode('echo "${X-none}"', { language: 'bash' })).logs.stdout.join(''), 'none\n')
    assert.equal((await sbx.runCode('echo "$X"', { context: ctx })).logs.stdout.join(''), 'ctx\n')
    await sbx.removeCodeContext(ctx)
    // A client timeout interrupts the command; the shell keeps its variables.
    await sbx.runCode('K=kept', { language: 'bash' })
    await assert.rejects(sbx.runCode('sleep 60', { language: 'bash', timeoutMs: 1500 }), (e: Error) => e.name === 'TimeoutError')
    assert.equal((await sbx.runCode('echo "$K"', { language: 'bash' })).logs.stdout.join(''), 'kept\n')
  })

  it('refuses what codebox does not run, with a clear error', async () => {
    await assert.rejects(sbx.runCode('1', { language: 'r', requestTimeoutMs: 2000 }), (e: Error) => /400/.test(e.message))
    await assert.rejects(sbx.removeCodeContext('python'), (e: Error) => /409/.test(e.message))
  })
})
