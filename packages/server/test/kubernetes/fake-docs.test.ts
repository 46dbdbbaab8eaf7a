// docs/kubernetes-testing.md's example, run as written: it starts the fake API server, creates a
// pod through @kubernetes/client-node and prints where and how it runs.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'

test('the example of docs/kubernetes-testing.md runs and prints what its comment says', async () => {
  const doc = await readFile(path.join(import.meta.dirname, '../../../../docs/kubernetes-testing.md'), 'utf8')
  const code = /```ts\n([\s\S]*?)```/.exec(doc)?.[1]
  assert.ok(code, 'the document has a ts example')
  const expected = /console\.log\(.*\/\/ (.*)$/m.exec(code)?.[1]
  assert.ok(expected, 'the example says what it prints')
  // Next to this test, so that its imports resolve as they do for any test of this package.
  const file = path.join(import.meta.dirname, `doc-example-${process.pid}.ts`)
  await writeFile(file, code)
  try {
    const { stdout } = await promisify(execFile)(process.execPath, ['--disable-warning=ExperimentalWarning', file], { timeout: 60_000 })
    assert.equal(stdout.trim(), expected)
  } finally {
    await rm(file, { force: true })
  }
})
