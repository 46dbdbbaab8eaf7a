/**
 * The cell rewriting of the Node kernel (executor/js_transform.mjs), run in fresh vm contexts so
 * each test sees what a notebook user would: globals, values and line numbers.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import vm from 'node:vm'

interface TransformedCell {
  code: string
  lineCount: number
  originalColumn(line: number, column: number): number
}

interface TransformModule {
  transformCell(source: string): TransformedCell
  stripTypes(source: string): { code: string; sourceMap?: { findEntry(line: number, column: number): { originalLine?: number } } }
}

// a plain .mjs without declarations: its shape is stated here rather than inferred as any
const transformModulePath = '../executor/js_transform.mjs'
const { transformCell, stripTypes } = (await import(transformModulePath)) as TransformModule

/** Runs cells one after another in one new global scope; returns a copy of the last cell's value. */
async function runCells(...cells: string[]): Promise<{ value: unknown; context: vm.Context }> {
  const context = vm.createContext({})
  let completion: { value: unknown } | undefined
  for (const [index, cell] of cells.entries()) {
    const script = new vm.Script(transformCell(cell).code, { filename: `cell[${index + 1}]`, lineOffset: -1 })
    completion = (await script.runInContext(context)) as { value: unknown } | undefined
  }
  // copied into this realm, so that deepEqual compares shapes and not prototypes of another realm
  return { value: structuredClone(completion?.value), context }
}

describe('transformCell', () => {
  it('makes top-level declarations globals that may be declared again', async () => {
    const { value, context } = await runCells(
      'const a = 1; let b; class C {}; function f() { return 1 }',
      'const a = 2; let b = 3; class C { n = 4 }; function f() { return 5 }\n[a, b, new C().n, f()]',
    )
    assert.deepEqual(value, [2, 3, 4, 5])
    assert.equal(context.a, 2)
  })

  it('gives let without a value undefined again, but leaves a bare var alone', async () => {
    assert.deepEqual((await runCells('let a = 1; var b = 2', 'let a; var b\n[a, b]')).value, [undefined, 2])
  })

  it('declares the names of destructuring patterns', async () => {
    const { context } = await runCells('const {a, b: [c, , d = 4], ...rest} = {a: 1, b: [2, 3], e: 5}\nlet [x, {y}] = [6, {y: 7}]')
    assert.deepEqual(structuredClone([context.a, context.c, context.d, context.rest, context.x, context.y]), [1, 2, 4, { e: 5 }, 6, 7])
  })

  it('turns var in blocks and loops into globals but leaves functions’ vars alone', async () => {
    const { context } = await runCells(
      '{ var inBlock = 1 }\nfor (var i = 0; i < 2; i++) {}\nfor (var k of [9]) {}\nfunction g() { var local = 1 }\nfor (let j = 0; j < 1; j++) {}',
    )
    assert.deepEqual([context.inBlock, context.i, context.k, 'local' in context, 'j' in context], [1, 2, 9, false, false])
  })

  it('returns the last expression statement, and nothing after a declaration', async () => {
    assert.equal((await runCells('1 + 1')).value, 2)
    assert.equal((await runCells('(1, 2);')).value, 2)
    assert.equal((await runCells('3 // trailing comment')).value, 3)
    assert.equal((await runCells('4\nvar later')).value, 4)
    assert.equal((await runCells('5; const after = 6')).value, undefined)
    assert.equal(transformCell('const a = 1').code.includes('return'), false)
  })

  it('reads a cell that starts with a brace as an object literal when it is one', async () => {
    assert.deepEqual((await runCells('{a: 1, b: {c: 2}}')).value, { a: 1, b: { c: 2 } })
    assert.equal((await runCells('{ let inner = 3 }')).value, undefined)
  })

  it('keeps statements apart where the source relied on line breaks', async () => {
    assert.equal((await runCells('class A {}\n[1, 2].length')).value, 2)
    assert.equal((await runCells('let n = 1\n++n')).value, 2)
  })

  it('rewrites static imports to awaited dynamic imports', () => {
    const { code } = transformCell('import d, {a as b, "x-y" as z} from "m" with {type: "json"}\nimport * as ns from \'n\'\nimport "side"')
    assert.match(code, /^var d, b, z, ns; /)
    assert.ok(code.includes('void ({default: d, a: b, "x-y": z} = await import("m", {with: {type: "json"}}));'))
    assert.ok(code.includes("void (ns = await import('n'));"))
    assert.ok(code.includes('await import("side");'))
  })

  it('keeps every line where it was', () => {
    const source = 'const {\n  a,\n  b\n} = {a: 1, b: 2}\nimport x,\n  {y} from "m"\nclass\nK {}\nthrow new Error("line 9")'
    const { code, lineCount } = transformCell(source)
    assert.equal(lineCount, 9)
    const lines = code.split('\n')
    assert.equal(lines.length, lineCount + 2)
    assert.equal(lines[9], 'throw new Error("line 9")')
  })

  it('maps columns of rewritten lines back to the user’s', () => {
    const cell = transformCell('let a = 1, b = 2; const c = null.x')
    const generated = cell.code.split('\n')[1] ?? ''
    assert.equal(cell.originalColumn(1, generated.indexOf('null') + 1), 'let a = 1, b = 2; const c = '.length + 1)
    assert.equal(cell.originalColumn(1, 1), 1)
  })

  it('throws a SyntaxError with line and column', () => {
    assert.throws(() => transformCell('ok()\nlet x = = 1'), { name: 'SyntaxError', message: 'Unexpected token', line: 2, column: 9 })
    assert.throws(() => transformCell('return 1'), { name: 'SyntaxError', line: 1 })
  })
})

describe('stripTypes', () => {
  it('blanks erasable types in place', () => {
    const source = 'interface P { x: number }\nconst p: P = { x: 1 } as P\nfunction id<T>(v: T): T { return v }'
    const { code, sourceMap } = stripTypes(source)
    assert.equal(sourceMap, undefined)
    assert.equal(code.length, source.length)
    assert.equal(code.split('\n')[1]?.trimEnd(), 'const p    = { x: 1 }')
  })

  it('transforms enums with a map back to the user’s lines', () => {
    const { code, sourceMap } = stripTypes('const before = 1\nenum E { A, B }\nE.B')
    assert.ok(code.includes('var E'))
    assert.ok(sourceMap)
    const line = code.split('\n').findIndex((text) => text.startsWith('const before'))
    assert.equal(sourceMap.findEntry(line, 0).originalLine, 0)
  })

  it('throws a SyntaxError with the line of invalid TypeScript', () => {
    assert.throws(() => stripTypes('const a = 1\nconst b: = 2'), { name: 'SyntaxError', line: 2 })
  })
})
