/**
 * The `deno` runtime through a session on the bwrap driver: JavaScript and TypeScript cells run
 * in a Deno kernel that keeps state like a notebook, beside the Node kernel and its own state;
 * and a sandbox without Deno (the fake driver) refuses the runtime up front.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { CodeboxError, type Language } from '@codebox/core'
import { defaultRecipe, type JsRuntime, type Session } from '@codebox/sandbox'
import { bwrapUnavailable, fakeManager, sharedBwrapSession, withSession } from './fixtures.ts'

const unavailable =
  (await bwrapUnavailable()) ?? (defaultRecipe().denoBinary ? undefined : 'npm installed no Deno binary for this platform, so the image has none')

/** Runs a cell and returns the text of its shown value; fails the test if the cell failed. */
async function value(session: Session, code: string, options: { language?: Language; runtime?: JsRuntime } = {}): Promise<string | undefined> {
  const r = await session.runCode({ code, language: options.language ?? 'javascript', runtime: options.runtime ?? 'deno' })
  assert.equal(r.isError, false, `cell failed: ${r.structuredContent.stderr}`)
  const shown = r.content.filter((b) => b.type === 'text' && b.text !== r.structuredContent.stdout)
  return shown.length ? shown.map((b) => (b.type === 'text' ? b.text : '')).join('') : undefined
}

/** Runs a shell command in the session and returns its stdout. */
async function sh(session: Session, command: string): Promise<string> {
  const r = await session.commands.run(command)
  assert.equal(r.structuredContent.exitCode, 0, r.structuredContent.stderr)
  return r.structuredContent.stdout
}

describe('JavaScript and TypeScript in the deno runtime (bwrap)', { skip: unavailable }, () => {
  const shared = sharedBwrapSession()

  it('reports deno among the runtimes and runs cells in Deno itself', async () => {
    assert.deepEqual(shared.session.runtimes, ['python', 'nodejs', 'deno'])
    assert.match((await value(shared.session, 'Deno.version.deno')) ?? '', /^"\d+\.\d+\.\d+"$/)
    assert.equal(await value(shared.session, 'typeof Deno', { runtime: 'nodejs' }), "'undefined'", 'a nodejs cell still runs in Node')
    assert.ok(
      (await sh(shared.session, 'ps -e -o args=')).split('\n').some((l) => l.startsWith('/usr/local/bin/deno run') && l.includes('kernel_deno.mjs')),
      'the kernel is a deno process',
    )
  })

  it('keeps state between cells, re-declared const and TypeScript included', async () => {
    await value(shared.session, 'let count = 1\nconst items = []\nfunction add(x) { items.push(x); return ++count }')
    assert.equal(await value(shared.session, 'add("a"); add("b")'), '3')
    assert.equal(await value(shared.session, 'const items = ["again"]\nitems.length + count'), '4')
    assert.equal(await value(shared.session, 'const n: number = count * 10\nn + items.length', { language: 'typescript' }), '31')
  })

  it('runs TypeScript, enums included, and shows values as Deno does', async () => {
    const code = [
      'interface Point { x: number; y: number }',
      'enum Axis { X = "x", Y = "y" }',
      'function norm(p: Point): number { return Math.hypot(p.x, p.y) }',
      'const pts: Point[] = [{ x: 3, y: 4 }, { x: 6, y: 8 }]',
      'console.log(`axis ${Axis.Y}`)',
      'const summary = { total: pts.map(norm).reduce((s: number, v) => s + v, 0) as number, label: "sum" }',
      'summary satisfies object',
    ].join('\n')
    const r = await shared.session.runCode({ code, language: 'typescript', runtime: 'deno' })
    assert.equal(r.isError, false, r.structuredContent.stderr)
    assert.equal(r.structuredContent.stdout, 'axis y\n')
    assert.deepEqual(r.content.at(-1), { type: 'text', text: '{ total: 15, label: "sum" }' })
  })

  it('runs top-level await and imports a TypeScript module from the workspace', async () => {
    assert.equal(await value(shared.session, 'await new Promise((r) => setTimeout(r, 10))\n"awaited"'), '"awaited"')
    await shared.session.files.write('shapes.ts', 'export const area = (r: number): number => Math.round(Math.PI * r * r)\n')
    assert.equal(await value(shared.session, 'import { area } from "./shapes.ts"\narea(2)'), '13')
  })

  it('reports a thrown error as data: isError, exit code 1, the error and its line in stderr', async () => {
    const r = await shared.session.runCode({
      code: 'console.log("before")\nfunction fail() {\n  throw new TypeError("nope here")\n}\nfail()',
      language: 'javascript',
      runtime: 'deno',
    })
    assert.equal(r.isError, true)
    assert.equal(r.structuredContent.exitCode, 1)
    assert.equal(r.structuredContent.stdout, 'before\n')
    assert.match(r.structuredContent.stderr, /TypeError: nope here\n {4}at fail \(cell\[\d+\]:3:\d+\)/)
    assert.doesNotMatch(r.structuredContent.stderr, /kernel_deno|ext:deno_node\/vm/, 'no kernel frames')
    assert.equal(await value(shared.session, '"still alive"'), '"still alive"')
  })

  it('clearContext resets the Deno kernel, not the Node one', async () => {
    await withSession(shared.manager, async (s) => {
      await value(s, 'const who = "deno"')
      await value(s, 'const who = "node"', { runtime: 'nodejs' })
      const cleared = await s.runCode({ code: 'typeof who', language: 'javascript', runtime: 'deno', clearContext: true })
      assert.deepEqual(cleared.content, [{ type: 'text', text: '"undefined"' }])
      assert.equal(await value(s, 'who', { runtime: 'nodejs' }), "'node'")
    })
  })

  it('keeps its cache under /tmp and leaves the workspace alone', async () => {
    await withSession(shared.manager, async (s) => {
      assert.equal(await value(s, 'Deno.env.get("DENO_DIR")'), '"/tmp/.cache/deno"')
      assert.equal(await sh(s, 'ls -A /workspace'), '')
      assert.notEqual(await sh(s, 'ls -A /tmp/.cache/deno'), '')
    })
  })
})

describe('the deno runtime in a sandbox without Deno (fake driver)', () => {
  it('is not among the runtimes, and a cell asking for it is a ValidationError', async () => {
    const manager = fakeManager()
    try {
      await withSession(manager, async (s) => {
        assert.deepEqual(s.runtimes, ['python', 'nodejs'])
        await assert.rejects(
          s.runCode({ code: '1', language: 'typescript', runtime: 'deno' }),
          (e: unknown) => e instanceof CodeboxError && e.code === 'ValidationError' && /deno is not available/.test(e.message),
        )
        const r = await s.runCode({ code: 'print("python ignores runtime")', language: 'python', runtime: 'deno' })
        assert.equal(r.structuredContent.stdout, 'python ignores runtime\n')
      })
    } finally {
      await manager.close()
    }
  })
})
