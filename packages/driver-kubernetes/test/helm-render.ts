/**
 * A small renderer for the subset of Helm's templates (Go text/template with Sprig) that
 * deploy/helm/codebox/templates/ uses, so a test can compare the chart with the builders without a
 * `helm` binary: text, `{{ pipeline }}` with `{{-`/`-}}` trimming, comments, `if`/`else`/`end`,
 * fields under `.Values` and `.Release`, string and number literals, and the functions `quote`,
 * `toYaml`, `nindent`, `indent` and `join`. Anything else is an error, never a guess; and it is
 * stricter than Helm where Helm would print `<no value>` for a missing field or a float64 in
 * exponent form (integers of a million or more).
 */
import { stringify } from 'yaml'

type Node = { t: 'text'; s: string } | { t: 'action'; pipe: string } | { t: 'if'; cond: string; then: Node[]; else: Node[] }

interface Token {
  kind: 'text' | 'action'
  s: string
}

function lex(src: string): Token[] {
  const out: Token[] = []
  let i = 0
  let trimNext = false
  while (i < src.length) {
    const open = src.indexOf('{{', i)
    let text = src.slice(i, open < 0 ? src.length : open)
    if (trimNext) text = text.replace(/^\s+/, '')
    trimNext = false
    if (open < 0) {
      out.push({ kind: 'text', s: text })
      break
    }
    const close = src.indexOf('}}', open)
    if (close < 0) throw new Error(`unclosed action at offset ${open}`)
    let inner = src.slice(open + 2, close)
    if (inner.startsWith('- ')) {
      text = text.replace(/\s+$/, '')
      inner = inner.slice(2)
    }
    if (inner.endsWith(' -')) {
      trimNext = true
      inner = inner.slice(0, -2)
    }
    out.push({ kind: 'text', s: text })
    inner = inner.trim()
    if (!(inner.startsWith('/*') && inner.endsWith('*/'))) out.push({ kind: 'action', s: inner })
    i = close + 2
  }
  return out
}

function parse(tokens: Token[], pos = { i: 0 }, inIf = false): { nodes: Node[]; ended: 'end' | 'else' | 'eof' } {
  const nodes: Node[] = []
  while (pos.i < tokens.length) {
    const tok = tokens[pos.i++]!
    if (tok.kind === 'text') {
      if (tok.s !== '') nodes.push({ t: 'text', s: tok.s })
    } else if (tok.s.startsWith('if ')) {
      const then = parse(tokens, pos, true)
      const otherwise = then.ended === 'else' ? parse(tokens, pos, true) : { nodes: [], ended: 'end' as const }
      if (otherwise.ended !== 'end') throw new Error(`'if ${tok.s.slice(3)}' has no end`)
      nodes.push({ t: 'if', cond: tok.s.slice(3), then: then.nodes, else: otherwise.nodes })
    } else if (tok.s === 'end' || tok.s === 'else') {
      if (!inIf) throw new Error(`'${tok.s}' outside an if`)
      return { nodes, ended: tok.s }
    } else if (/^(range|with|define|template|include|block)\b/.test(tok.s)) {
      throw new Error(`'${tok.s}' is beyond this renderer`)
    } else nodes.push({ t: 'action', pipe: tok.s })
  }
  if (inIf) throw new Error('an if without its end')
  return { nodes, ended: 'eof' }
}

export interface RenderContext {
  Values: unknown
  Release: { Namespace: string; Name: string }
}

function words(command: string): string[] {
  const out: string[] = []
  const re = /"(?:[^"\\]|\\.)*"|\S+/g
  for (const m of command.matchAll(re)) out.push(m[0])
  return out
}

function splitPipe(pipe: string): string[] {
  const parts: string[] = []
  let cur = ''
  let quoted = false
  for (let i = 0; i < pipe.length; i++) {
    const c = pipe[i]!
    if (c === '"' && pipe[i - 1] !== '\\') quoted = !quoted
    if (c === '|' && !quoted) {
      parts.push(cur.trim())
      cur = ''
    } else cur += c
  }
  parts.push(cur.trim())
  return parts
}

function operand(word: string, ctx: RenderContext): unknown {
  if (word.startsWith('"')) return JSON.parse(word) as string
  if (/^-?\d+$/.test(word)) return Number(word)
  if (word.startsWith('.')) {
    let v: unknown = ctx
    for (const key of word.slice(1).split('.')) {
      if (typeof v !== 'object' || v === null) return undefined
      v = (v as Record<string, unknown>)[key]
    }
    return v
  }
  throw new Error(`'${word}' is not a field or a literal this renderer knows`)
}

/** Go's %v of a value Helm holds (YAML numbers are float64). */
function print(v: unknown, what: string): string {
  if (typeof v === 'string') return v
  if (typeof v === 'boolean') return String(v)
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || Math.abs(v) >= 1e6) throw new Error(`${what}: ${v} would print as a float64 in Helm (1e+06); quote it in values.yaml`)
    return String(v)
  }
  if (v === undefined || v === null) throw new Error(`${what} is missing (Helm would render <no value>)`)
  throw new Error(`${what} is a ${Array.isArray(v) ? 'list' : 'map'}: use toYaml`)
}

const functions: Record<string, (args: unknown[], what: string) => unknown> = {
  quote: (args, what) =>
    args
      .filter((a) => a !== undefined && a !== null)
      .map((a) => JSON.stringify(print(a, what)))
      .join(' '),
  toYaml: ([v]) => (v === undefined || v === null ? 'null' : stringify(v, { sortMapEntries: true, lineWidth: 0, indentSeq: false }).replace(/\n$/, '')),
  indent: ([n, s], what) => indent(n, s, what),
  nindent: ([n, s], what) => `\n${indent(n, s, what)}`,
  join: ([sep, list], what) => {
    if (!Array.isArray(list)) throw new Error(`${what}: join needs a list`)
    return list.map((x) => print(x, what)).join(print(sep, what))
  },
}

function indent(n: unknown, s: unknown, what: string): string {
  if (typeof n !== 'number') throw new Error(`${what}: indent needs a number`)
  const pad = ' '.repeat(n)
  return pad + print(s, what).replaceAll('\n', `\n${pad}`)
}

function evaluate(pipe: string, ctx: RenderContext): unknown {
  let value: unknown
  let first = true
  for (const command of splitPipe(pipe)) {
    const [head, ...rest] = words(command)
    if (head === undefined) throw new Error(`an empty command in '${pipe}'`)
    const fn = functions[head]
    if (fn === undefined) {
      if (!first || rest.length > 0) throw new Error(`'${head}' is not a function this renderer knows (in '${pipe}')`)
      value = operand(head, ctx)
    } else {
      const args = rest.map((w) => operand(w, ctx))
      if (!first) args.push(value)
      value = fn(args, `'${pipe}'`)
    }
    first = false
  }
  return value
}

function truthy(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return false
  if (Array.isArray(v)) return v.length > 0
  if (typeof v === 'object') return Object.keys(v).length > 0
  return true
}

function run(nodes: Node[], ctx: RenderContext): string {
  let out = ''
  for (const n of nodes) {
    if (n.t === 'text') out += n.s
    else if (n.t === 'action') out += print(evaluate(n.pipe, ctx), `'${n.pipe}'`)
    else out += run(truthy(evaluate(n.cond, ctx)) ? n.then : n.else, ctx)
  }
  return out
}

/** Renders one template with `ctx`. */
export function renderTemplate(template: string, ctx: RenderContext): string {
  return run(parse(lex(template)).nodes, ctx)
}
