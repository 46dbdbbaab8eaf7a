/** The CSV reader of the file preview. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseCsv } from '../src/csv.ts'

test('quoted cells keep commas, quotes and newlines; CRLF and a missing last newline work', () => {
  assert.deepEqual(parseCsv('a,b\r\n"x, y","say ""hi"""\n"multi\nline",2'), [
    ['a', 'b'],
    ['x, y', 'say "hi"'],
    ['multi\nline', '2'],
  ])
})

test('stops after maxRows rows', () => {
  const text = Array.from({ length: 1000 }, (_, i) => `${i},${i * 2}`).join('\n')
  const rows = parseCsv(text, 51)
  assert.equal(rows.length, 51)
  assert.deepEqual(rows[50], ['50', '100'])
})

test('empty cells and an empty text', () => {
  assert.deepEqual(parseCsv(',,\n1,,3\n'), [
    ['', '', ''],
    ['1', '', '3'],
  ])
  assert.deepEqual(parseCsv(''), [])
})
