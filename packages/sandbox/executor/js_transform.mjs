// Rewrites a notebook cell so that it runs like a line typed into the Node REPL or Chrome
// DevTools: top-level declarations become globals that a later cell may declare again, top-level
// `await` and static `import` work, and the value of a last expression statement is returned.
// Every rewrite keeps the cell's line numbers, so stack traces point at the user's lines.

import * as acorn from 'acorn'
import { SourceMap, stripTypeScriptTypes } from 'node:module'

const parseOptions = {
  ecmaVersion: 'latest',
  sourceType: 'script',
  allowAwaitOutsideFunction: true,
  allowImportExportEverywhere: true,
  allowHashBang: true,
}

/**
 * Turns a cell into a script for `vm.Script`. The script's first line is a prelude of ours, so
 * compile it with `lineOffset: -1`; it evaluates to a promise of `{value}` when the cell ends
 * with an expression statement, else of `undefined`.
 * Throws a SyntaxError with 1-based `line` and `column` when the cell does not parse.
 * @param {string} source JavaScript
 * @returns {{code: string, lineCount: number, originalColumn: (line: number, column: number) => number}}
 *   `lineCount`: lines of the user's code in `code`; `originalColumn` maps a 1-based column of a
 *   stack frame in `code` back to the cell's
 */
export function transformCell(source) {
  const { program, text } = parseCell(source)
  const edits = []
  const hoisted = new Set()
  const functions = []
  for (const statement of program.body) {
    rewriteTopLevel(statement, { text, edits, hoisted, functions })
  }
  const last = program.body.findLast((statement) => !isInert(statement))
  if (last?.type === 'ExpressionStatement') {
    // the statement, not its expression, so that parentheses around the expression stay whole
    const end = text[last.end - 1] === ';' ? last.end - 1 : last.end
    edits.push({ start: last.start, end: last.start, text: 'return {value: (' })
    edits.push({ start: end, end, text: ')}' })
  }
  const declarations = hoisted.size > 0 ? `var ${[...hoisted].join(', ')}; ` : ''
  const exports = functions.map((name) => `this.${name} = ${name}; `).join('')
  const prelude = `${declarations}(async () => { ${exports}`
  const output = applyEdits(text, edits)
  return {
    code: `${prelude}\n${output.text}\n})()`,
    lineCount: text.split('\n').length,
    originalColumn: (line, column) => originalColumnOf(output.anchors, line, column),
  }
}

/**
 * Removes TypeScript types. Erasable syntax is replaced by blanks, keeping every position; a cell
 * with enums, namespaces or parameter properties is transformed instead and comes with a source
 * map to its own lines. Throws a SyntaxError with `line` and `column` when the cell does not parse.
 * @param {string} source TypeScript
 * @returns {{code: string, sourceMap?: SourceMap}}
 */
export function stripTypes(source) {
  try {
    return { code: stripTypeScriptTypes(source, { mode: 'strip' }) }
  } catch (error) {
    if (error?.code !== 'ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX') throw typeScriptSyntaxError(error)
  }
  let output
  try {
    output = stripTypeScriptTypes(source, { mode: 'transform', sourceMap: true })
  } catch (error) {
    throw typeScriptSyntaxError(error)
  }
  const marker = output.lastIndexOf('\n//# sourceMappingURL=data:application/json;base64,')
  if (marker === -1) return { code: output }
  const payload = output.slice(output.indexOf(',', marker) + 1).trim()
  const sourceMap = new SourceMap(JSON.parse(Buffer.from(payload, 'base64').toString('utf8')))
  return { code: output.slice(0, marker), sourceMap }
}

// `var x;` does nothing, and TypeScript puts one after a cell's namespaces.
function isInert(statement) {
  if (statement.type === 'EmptyStatement') return true
  return statement.type === 'VariableDeclaration' && statement.kind === 'var' && statement.declarations.every((d) => d.init === null)
}

// A cell that looks like an object literal (`{a: 1}`) is one, as in the REPL, not a block.
function parseCell(source) {
  if (/^\s*\{/.test(source) && !/;\s*$/.test(source)) {
    const wrapped = `(${source}\n)`
    try {
      const program = acorn.parse(wrapped, parseOptions)
      if (program.body.length === 1 && program.body[0].type === 'ExpressionStatement') {
        return { program, text: wrapped }
      }
    } catch {
      // a block after all
    }
  }
  try {
    return { program: acorn.parse(source, parseOptions), text: source }
  } catch (error) {
    if (!(error instanceof SyntaxError) || !error.loc) throw error
    const message = error.message.replace(/ \(\d+:\d+\)$/, '')
    throw locatedSyntaxError(message, error.loc.line, error.loc.column + 1)
  }
}

function rewriteTopLevel(node, state) {
  switch (node.type) {
    case 'VariableDeclaration':
      if (node.kind === 'var' || node.kind === 'let' || node.kind === 'const') {
        rewriteDeclaration(node, 'statement', state)
      }
      return
    case 'FunctionDeclaration':
      state.hoisted.add(node.id.name)
      state.functions.push(node.id.name)
      return
    case 'ClassDeclaration':
      state.hoisted.add(node.id.name)
      state.edits.push({ start: node.start, end: node.start, text: `${node.id.name} = ` })
      state.edits.push({ start: node.end, end: node.end, text: ';' })
      return
    case 'ImportDeclaration':
      rewriteImport(node, state)
      return
    case 'ExportNamedDeclaration':
      if (node.declaration) {
        replace(state, node.start, node.declaration.start, '')
        rewriteTopLevel(node.declaration, state)
      }
      return
    default:
      hoistNestedVars(node, state)
  }
}

// `var` anywhere outside a function belongs to the global scope too.
function hoistNestedVars(node, state) {
  if (!node || typeof node !== 'object') return
  switch (node.type) {
    case 'VariableDeclaration':
      if (node.kind === 'var') rewriteDeclaration(node, 'statement', state)
      return
    case 'ForStatement':
      if (node.init?.type === 'VariableDeclaration' && node.init.kind === 'var') {
        rewriteDeclaration(node.init, 'expression', state)
      }
      hoistNestedVars(node.body, state)
      return
    case 'ForInStatement':
    case 'ForOfStatement':
      if (node.left.type === 'VariableDeclaration' && node.left.kind === 'var') {
        rewriteDeclaration(node.left, 'target', state)
      }
      hoistNestedVars(node.body, state)
      return
    case 'BlockStatement':
      for (const child of node.body) hoistNestedVars(child, state)
      return
    case 'IfStatement':
      hoistNestedVars(node.consequent, state)
      hoistNestedVars(node.alternate, state)
      return
    case 'TryStatement':
      hoistNestedVars(node.block, state)
      hoistNestedVars(node.handler?.body, state)
      hoistNestedVars(node.finalizer, state)
      return
    case 'SwitchStatement':
      for (const switchCase of node.cases) {
        for (const child of switchCase.consequent) hoistNestedVars(child, state)
      }
      return
    case 'LabeledStatement':
    case 'WhileStatement':
    case 'DoWhileStatement':
    case 'WithStatement':
      hoistNestedVars(node.body, state)
      return
    default:
  }
}

/**
 * `const {a, b} = x;` becomes `void ({a, b} = x);` with `var a, b` in the prelude. `position`
 * says where the declaration stands: a statement, a `for (;;)` initialiser, or a for-in/of target.
 */
function rewriteDeclaration(node, position, state) {
  for (const declarator of node.declarations) collectNames(declarator.id, state.hoisted)
  const first = node.declarations[0]
  if (position === 'target') {
    replace(state, node.start, first.start, '')
    return
  }
  replace(state, node.start, first.start, 'void (')
  for (const declarator of node.declarations) {
    if (declarator.init === null && node.kind !== 'var') {
      state.edits.push({ start: declarator.end, end: declarator.end, text: ' = void 0' })
    }
  }
  const close = position === 'statement' ? ');' : ')'
  if (position === 'statement' && state.text[node.end - 1] === ';') {
    state.edits.push({ start: node.end - 1, end: node.end, text: close })
  } else {
    state.edits.push({ start: node.end, end: node.end, text: close })
  }
}

// `import d, {a as b} from 'm'` becomes `void ({default: d, a: b} = await import('m'));`.
function rewriteImport(node, state) {
  const { text } = state
  const attributes = node.attributes ?? []
  const options =
    attributes.length === 0
      ? ''
      : `, {with: {${attributes.map((attribute) => `${text.slice(attribute.key.start, attribute.key.end)}: ${attribute.value.raw}`).join(', ')}}}`
  const load = `await import(${node.source.raw}${options})`
  const fields = []
  let namespace = null
  for (const specifier of node.specifiers) {
    state.hoisted.add(specifier.local.name)
    if (specifier.type === 'ImportNamespaceSpecifier') namespace = specifier.local.name
    else if (specifier.type === 'ImportDefaultSpecifier') fields.push(`default: ${specifier.local.name}`)
    else fields.push(`${specifier.imported.raw ?? specifier.imported.name}: ${specifier.local.name}`)
  }
  let target = load
  if (namespace) target = `${namespace} = ${target}`
  if (fields.length > 0) target = `{${fields.join(', ')}} = ${target}`
  replace(state, node.start, node.end, node.specifiers.length === 0 ? `${load};` : `void (${target});`)
}

function collectNames(pattern, names) {
  if (!pattern) return
  switch (pattern.type) {
    case 'Identifier':
      names.add(pattern.name)
      return
    case 'ObjectPattern':
      for (const property of pattern.properties) {
        collectNames(property.type === 'RestElement' ? property.argument : property.value, names)
      }
      return
    case 'ArrayPattern':
      for (const element of pattern.elements) collectNames(element, names)
      return
    case 'AssignmentPattern':
      collectNames(pattern.left, names)
      return
    case 'RestElement':
      collectNames(pattern.argument, names)
      return
    default:
  }
}

// A replaced range keeps its line breaks, so the lines after it keep their numbers.
function replace(state, start, end, text) {
  const breaks = state.text.slice(start, end).replace(/[^\n]/g, '')
  state.edits.push({ start, end, text: text + breaks })
}

/**
 * Applies the edits and notes, line by line, where output columns start to differ from the
 * cell's: `anchors` holds `{generated, original, exact}` (0-based columns), where `exact` says
 * that the text from `generated` on is the user's own (else it is inserted text).
 */
function applyEdits(text, edits) {
  const ordered = edits.map((edit, index) => ({ ...edit, index })).sort((a, b) => a.start - b.start || a.index - b.index)
  const anchors = new Map()
  const output = { text: '', line: 1, column: 0 }
  const input = { line: 1, column: 0 }
  const anchor = (exact) => {
    const list = anchors.get(output.line) ?? []
    list.push({ generated: output.column, original: input.column, exact })
    anchors.set(output.line, list)
  }
  let position = 0
  for (const edit of ordered) {
    emit(output, text.slice(position, edit.start))
    advance(input, text.slice(position, edit.start))
    anchor(false)
    emit(output, edit.text)
    advance(input, text.slice(Math.max(position, edit.start), edit.end))
    position = Math.max(position, edit.end)
    anchor(true)
  }
  emit(output, text.slice(position))
  return { text: output.text, anchors }
}

function emit(cursor, text) {
  cursor.text += text
  advance(cursor, text)
}

function advance(cursor, text) {
  const lastBreak = text.lastIndexOf('\n')
  if (lastBreak === -1) {
    cursor.column += text.length
    return
  }
  for (const char of text) if (char === '\n') cursor.line += 1
  cursor.column = text.length - lastBreak - 1
}

function originalColumnOf(anchors, line, column) {
  let found
  for (const candidate of anchors.get(line) ?? []) {
    if (candidate.generated <= column - 1) found = candidate
  }
  if (!found) return column
  return found.exact ? found.original + (column - 1 - found.generated) + 1 : found.original + 1
}

function typeScriptSyntaxError(error) {
  if (!(error instanceof SyntaxError)) return error
  // Node reports the place only in the stack's header: ":line\n<source>\n   ^^^".
  const stack = String(error.stack ?? '')
  const line = Number(/^:(\d+)\n/.exec(stack)?.[1] ?? 0)
  const caret = /\n( *)\^+ *\n/.exec(stack)
  const column = caret ? caret[1].length + 1 : 1
  const message = error.message
  return line > 0 ? locatedSyntaxError(message, line, column) : new SyntaxError(message)
}

function locatedSyntaxError(message, line, column) {
  return Object.assign(new SyntaxError(message), { line, column })
}
