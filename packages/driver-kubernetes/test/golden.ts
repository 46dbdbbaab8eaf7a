/**
 * Golden files: a builder's output for fixed inputs, kept under test/golden/ and compared exactly.
 * With CODEBOX_UPDATE_GOLDEN=1 the files are rewritten instead (then review the diff).
 */
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const goldenDir = fileURLToPath(new URL('./golden/', import.meta.url))

export async function expectGolden(name: string, text: string): Promise<void> {
  const file = path.join(goldenDir, name)
  if (process.env.CODEBOX_UPDATE_GOLDEN === '1') {
    await writeFile(file, text)
    return
  }
  let want: string
  try {
    want = await readFile(file, 'utf8')
  } catch (e) {
    throw new Error(`${file} is missing: run with CODEBOX_UPDATE_GOLDEN=1 to write it`, { cause: e })
  }
  assert.equal(text, want, `${name} differs from the builders' output (CODEBOX_UPDATE_GOLDEN=1 rewrites it; review the diff)`)
}
