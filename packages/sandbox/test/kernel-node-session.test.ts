/**
 * JavaScript and TypeScript through a session on the bwrap driver: the Node kernel starts only
 * when a session first needs it, keeps state like a notebook, strips TypeScript types, and
 * reports errors as data the user can read.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Language } from '@codebox/core'
import type { Session } from '@codebox/sandbox'
import { bwrapUnavailable, py, sharedBwrapSession, withSession } from './fixtures.ts'

const unavailable = await bwrapUnavailable()

/** Runs a cell and returns the text of its shown value; fails the test if the cell failed. */
async function value(session: Session, code: string, language: Language = 'javascript'): Promise<string | undefined> {
  const r = await session.runCode({ code, language })
  assert.equal(r.isError, false, `cell failed: ${r.structuredContent.stderr}`)
  const shown = r.content.filter((b) => b.type === 'text' && b.text !== r.structuredContent.stdout)
  return shown.length ? shown.map((b) => (b.type === 'text' ? b.text : '')).join('') : undefined
}

/** The sandbox's processes, one `comm args` line each. */
async function processes(session: Session): Promise<string[]> {
  const r = await session.commands.run('ps -e -o comm= -o args=')
  assert.equal(r.structuredContent.exitCode, 0, r.structuredContent.stderr)
  return r.structuredContent.stdout.trim().split('\n')
}

const isNode = (line: string): boolean => /\bnode\b|kernel_node|MainThread/.test(line)

describe('JavaScript and TypeScript in a session (bwrap)', { skip: unavailable }, () => {
  const shared = sharedBwrapSession()

  it('starts the Node kernel only when a session first runs JavaScript', async () => {
    await withSession(shared.manager, async (s) => {
      assert.equal(await py(s, 'print("python only")'), 'python only\n')
      const before = await processes(s)
      assert.ok(
        before.some((l) => l.includes('kernel_python.py')),
        `the Python kernel runs: ${before.join(' | ')}`,
      )
      assert.deepEqual(before.filter(isNode), [], 'a Python-only session has no node process')

      assert.equal(await value(s, '1 + 1'), '2')
      const after = await processes(s)
      assert.equal(after.filter(isNode).length, 1, `one Node kernel after the first JavaScript cell: ${after.join(' | ')}`)
    })
  })

  it('keeps state between cells, shared by JavaScript and TypeScript', async () => {
    await value(shared.session, 'let count = 1\nvar items = []\nfunction add(x) { items.push(x); return ++count }')
    assert.equal(await value(shared.session, 'add("a"); add("b")'), '3')
    assert.equal(await value(shared.session, 'const n: number = count * 10\nn + items.length', 'typescript'), '32')
  })

  it('lets a cell declare a const again, as a notebook user re-runs a cell', async () => {
    await value(shared.session, 'const limit = 1')
    assert.equal(await value(shared.session, 'const limit = 2\nlimit'), '2')
    assert.equal(await value(shared.session, 'limit * 21'), '42')
  })

  it('runs top-level await', async () => {
    assert.equal(await value(shared.session, 'const wait = (ms) => new Promise((r) => setTimeout(r, ms))\nawait wait(10)\n"awaited"'), "'awaited'")
    assert.equal(await value(shared.session, 'const [a, b] = await Promise.all([wait(1).then(() => 20), 22])\na + b'), '42')
  })

  it('strips TypeScript types and runs what is left', async () => {
    const code = [
      'interface Point { x: number; y: number }',
      'type Pair<T> = [T, T]',
      'function norm(p: Point): number { return Math.hypot(p.x, p.y) }',
      'const pair: Pair<Point> = [{ x: 3, y: 4 }, { x: 6, y: 8 }]',
      'const total = pair.map((p: Point) => norm(p)).reduce((s: number, v) => s + v, 0) as number',
      'console.log(`total ${total}`)',
      'total satisfies number',
    ].join('\n')
    const r = await shared.session.runCode({ code, language: 'typescript' })
    assert.equal(r.isError, false, r.structuredContent.stderr)
    assert.equal(r.structuredContent.stdout, 'total 15\n')
    assert.deepEqual(r.content.at(-1), { type: 'text', text: '15' })
  })

  it('reports a thrown error as data: isError, exit code 1, the error and its line in stderr', async () => {
    const r = await shared.session.runCode({
      code: 'console.log("before")\nfunction fail() {\n  throw new TypeError("nope here")\n}\nfail()',
      language: 'javascript',
    })
    assert.equal(r.isError, true)
    assert.equal(r.structuredContent.exitCode, 1)
    assert.equal(r.structuredContent.stdout, 'before\n')
    assert.match(r.structuredContent.stderr, /TypeError: nope here/)
    assert.match(r.structuredContent.stderr, /at fail \(cell\[\d+\]:3:\d+\)/)
    assert.ok(
      r.content.some((b) => b.type === 'text' && b.text.includes('TypeError: nope here')),
      'the error is in the content a model reads',
    )
    assert.equal(await value(shared.session, '"still alive"'), "'still alive'")
  })

  it('reports a TypeScript syntax error with its line', async () => {
    const r = await shared.session.runCode({ code: 'const ok: number = 1\nlet broken: number = = 2', language: 'typescript' })
    assert.equal(r.isError, true)
    assert.equal(r.structuredContent.exitCode, 1)
    assert.match(r.structuredContent.stderr, /SyntaxError/)
    assert.match(r.structuredContent.stderr, /let broken: number = = 2/)
  })

  it('clearContext resets the JavaScript kernel, not the Python one', async () => {
    await withSession(shared.manager, async (s) => {
      await value(s, 'const secret = 41\nglobalThis.marker = "set"')
      await py(s, 'kept = "python state"')
      const cleared = await s.runCode({ code: '[typeof secret, typeof marker]', language: 'javascript', clearContext: true })
      assert.deepEqual(cleared.content, [{ type: 'text', text: "[ 'undefined', 'undefined' ]" }])
      assert.equal(await value(s, 'const secret = "new"; secret'), "'new'")
      assert.equal(await py(s, 'print(kept)'), 'python state\n')
    })
  })
})
