/**
 * The CLI end to end on the real bwrap driver, including every `npx codebox` example and the
 * library example of the README, run as a user would.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'

const repo = fileURLToPath(new URL('../../../', import.meta.url))
const bin = path.join(repo, 'packages/cli/bin/codebox')

function codebox(args: string[], options: { input?: string; cwd?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(bin, args, { cwd: options.cwd ?? repo, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.stdin.end(options.input ?? '')
    child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }))
  })
}

/** The shell-quoted arguments of a README line like `npx codebox exec -l python '...'   # comment`. */
function shellWords(line: string): string[] {
  const words: string[] = []
  const re = /'([^']*)'|"((?:[^"\\]|\\.)*)"|(#.*$)|(\S+)/g
  for (const m of line.matchAll(re)) {
    if (m[3] !== undefined) break
    words.push(m[1] ?? m[2] ?? m[4]!)
  }
  return words
}

describe('codebox CLI', () => {
  let skip: string | undefined
  let work: string
  before(async () => {
    skip = await bwrapUnavailable()
    work = await mkdtemp(path.join(tmpdir(), 'codebox-cli-test-'))
  })
  after(async () => rm(work, { recursive: true, force: true }))

  test('every `npx codebox exec` example in the README works', async (t) => {
    if (skip) return t.skip(skip)
    const readme = await readFile(path.join(repo, 'README.md'), 'utf8')
    const lines = readme.split('\n').filter((l) => l.startsWith('npx codebox exec '))
    assert.ok(lines.length >= 3, 'the README shows exec examples')
    const expected = [/a\s+3/, /^42$/m, /Python 3\.11/]
    for (const [i, line] of lines.entries()) {
      const r = await codebox(shellWords(line).slice(2))
      assert.equal(r.code, 0, `${line}\n${r.stderr}`)
      assert.match(r.stdout, expected[i]!, line)
    }
  })

  test('exec: a failing program sets the exit code and prints the traceback; --json gives the result', async (t) => {
    if (skip) return t.skip(skip)
    const failed = await codebox(['exec', 'raise ValueError("boom")'])
    assert.equal(failed.code, 1)
    assert.match(failed.stderr, /ValueError: boom/)
    const cmd = await codebox(['exec', '-c', 'exit 7'])
    assert.equal(cmd.code, 7)
    const json = await codebox(['exec', '--json', 'print(6*7)'])
    const result = JSON.parse(json.stdout) as { structuredContent: { stdout: string }; isError: boolean }
    assert.equal(result.structuredContent.stdout, '42\n')
    assert.equal(result.isError, false)
  })

  test('exec: reads code from stdin and saves charts as PNG files', async (t) => {
    if (skip) return t.skip(skip)
    const code = 'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()\nprint("plotted")'
    const r = await codebox(['exec', '-f', '-', '--out-dir', work], { input: code })
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /plotted/)
    const pngs = (await readdir(work)).filter((f) => f.endsWith('.png'))
    assert.equal(pngs.length, 1)
    const bytes = await readFile(path.join(work, pngs[0]!))
    assert.deepEqual([...bytes.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47])
  })

  test('repl: cells share state, blocks span lines, .clear resets', async (t) => {
    if (skip) return t.skip(skip)
    const input = ['x = 41', 'def f(y):', '    return y + 1', '', 'f(x)', '.clear', 'x', '.exit', ''].join('\n')
    const r = await codebox(['repl', '-l', 'python'], { input })
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^42$/m)
    assert.match(r.stderr, /NameError: name 'x' is not defined/)
  })

  test('bad input: unknown language and unknown option are usage errors naming the problem', async () => {
    const lang = await codebox(['exec', '-l', 'cobol', 'x'])
    assert.equal(lang.code, 64)
    assert.match(lang.stderr, /--language: must be one of python, javascript, typescript/)
    const opt = await codebox(['exec', '--frobnicate'])
    assert.equal(opt.code, 64)
    assert.match(opt.stderr, /--frobnicate: unknown option/)
    const cmd = await codebox(['frobnicate'])
    assert.equal(cmd.code, 64)
  })

  test('image build reports the cached image with its size', async (t) => {
    if (skip) return t.skip(skip)
    const r = await codebox(['image', 'build'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /image [0-9a-f]{16}: \d+\.\d+ GiB, cached/)
  })

  test('the README library example runs', async (t) => {
    if (skip) return t.skip(skip)
    const readme = await readFile(path.join(repo, 'README.md'), 'utf8')
    const example = /```ts\n([\s\S]*?)```/.exec(readme)?.[1]
    assert.ok(example, 'the README has a TypeScript example')
    const file = path.join(repo, 'packages/cli/test', `readme-example-${process.pid}.ts`)
    await writeFile(file, example)
    try {
      const r = await new Promise<{ code: number; out: string }>((resolve) => {
        const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', file], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] })
        let out = ''
        child.stdout.on('data', (c: Buffer) => (out += c.toString()))
        child.stderr.on('data', (c: Buffer) => (out += c.toString()))
        child.on('exit', (code) => resolve({ code: code ?? -1, out }))
      })
      assert.equal(r.code, 0, r.out)
      assert.match(r.out, /a +4\\nb +6/)
      assert.match(r.out, /type: 'text'/)
    } finally {
      await unlink(file)
    }
  })
})
