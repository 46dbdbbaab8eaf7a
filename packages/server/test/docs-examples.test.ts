/**
 * docs/api.md's examples, run: every ```sh block in order in one bash (so `$SID` carries over)
 * against a real server, its port swapped in; the ```json block after a command must have the
 * same shape as what the command printed (same keys and value types; ids and times differ).
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { testServer } from './fixtures.ts'

const doc = fs.readFileSync(path.join(import.meta.dirname, '../../../docs/api.md'), 'utf8')

interface Example {
  sh: string
  json?: string
}

function examples(): Example[] {
  const blocks = [...doc.matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1]!, body: m[2]! }))
  const out: Example[] = []
  for (const [i, b] of blocks.entries()) {
    if (b.lang !== 'sh') continue
    const next = blocks[i + 1]
    out.push({ sh: b.body, ...(next?.lang === 'json' ? { json: next.body } : {}) })
  }
  return out
}

/** Where `actual` differs in shape from `expected`, or undefined. */
function shapeDiff(expected: unknown, actual: unknown, at = '$'): string | undefined {
  if (expected === null || typeof expected !== 'object') {
    return typeof expected === typeof actual ? undefined : `${at}: expected a ${typeof expected}, got ${JSON.stringify(actual)?.slice(0, 80)}`
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return `${at}: expected an array`
    return expected.length && actual.length ? shapeDiff(expected[0], actual[0], `${at}[0]`) : undefined
  }
  if (!actual || typeof actual !== 'object' || Array.isArray(actual)) return `${at}: expected an object`
  const e = Object.keys(expected).sort()
  const a = Object.keys(actual).sort()
  if (e.join() !== a.join()) return `${at}: keys ${a.join(',')} but the doc shows ${e.join(',')}`
  for (const k of e) {
    const d = shapeDiff((expected as Record<string, unknown>)[k], (actual as Record<string, unknown>)[k], `${at}.${k}`)
    if (d) return d
  }
  return undefined
}

test('every curl example of docs/api.md runs and answers in the documented shape', async (t) => {
  if (spawnSync('sh', ['-c', 'command -v curl && command -v jq']).status !== 0) return t.skip('curl and jq are needed (npm test installs them)')
  const s = await testServer(t)
  const port = new URL(s.url).port
  const list = examples()
  assert.ok(list.length >= 20, `docs/api.md has ${list.length} shell examples`)
  // One bash runs them all; each example's output ends with a marker line so they can be split.
  // errexit and pipefail: a command that fails anywhere in an example (not only its last) stops
  // the script, and the missing markers name the example.
  const script = ['set -eo pipefail', ...list.map((e, i) => `${e.sh.replaceAll('127.0.0.1:8080', `127.0.0.1:${port}`)}\necho; echo "@@example ${i} ok"`)].join(
    '\n',
  )
  // Not spawnSync: the server runs in this process and must keep answering.
  const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn('bash', ['-c', script], { cwd: fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-doc-')), timeout: 120_000 })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('close', (status) => resolve({ status, stdout, stderr }))
  })
  const done = [...r.stdout.matchAll(/^@@example (\d+) ok$/gm)].length
  if (r.status !== 0 || done !== list.length) {
    const failed = list[done]
    assert.fail(
      `example ${done + 1} of docs/api.md failed (bash exit ${r.status}):\n${failed?.sh ?? ''}\n--- stderr:\n${r.stderr.slice(-1500)}\n--- stdout:\n${r.stdout.slice(-1500)}`,
    )
  }
  const outputs = r.stdout.split(/^@@example \d+ ok$/m)
  let checked = 0
  for (const [i, e] of list.entries()) {
    const out = outputs[i]!.trim()
    if (!e.json) continue
    let expected: unknown
    try {
      expected = JSON.parse(e.json)
    } catch {
      continue // a block of several JSON lines (SSE, NDJSON) is shown, not compared
    }
    let actual: unknown
    try {
      actual = JSON.parse(out)
    } catch {
      assert.fail(`example ${i + 1} printed no JSON:\n${e.sh}\n--- got:\n${out.slice(0, 800)}`)
    }
    const diff = shapeDiff(expected, actual)
    assert.equal(diff, undefined, `example ${i + 1}:\n${e.sh}\n--- ${diff}\n--- got:\n${out.slice(0, 800)}`)
    checked++
  }
  assert.ok(checked >= 15, `only ${checked} examples were compared`)
})
