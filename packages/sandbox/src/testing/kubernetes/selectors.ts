/**
 * Label selectors (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`, `a`, `!a`) and field
 * selectors (`metadata.name=x`, `!=`; also metadata.namespace, and spec.nodeName and status.phase
 * on pods) as the API server parses them from `labelSelector` / `fieldSelector`. A selector that
 * does not parse is a 400 naming what was wrong.
 */
import { KubeError } from './status.ts'

type Requirement =
  { op: 'exists' | 'notexists'; key: string } | { op: 'in' | 'notin'; key: string; values: string[] } | { op: 'eq' | 'neq'; key: string; value: string }

/** A parsed selector: true when the map (labels, or the object's field values) matches. */
export type Matcher = (values: Readonly<Record<string, string>>) => boolean

const labelKey = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/
const labelValue = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/
const MAX_SELECTOR = 4096

function bad(kind: string, selector: string, why: string): KubeError {
  return new KubeError('BadRequest', `unable to parse requirement: invalid ${kind} selector "${selector.slice(0, 200)}": ${why}`)
}

/** Splits on commas that are not inside parentheses. */
function splitTop(s: string): string[] {
  const parts: string[] = []
  let depth = 0
  let start = 0
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '(') depth++
    else if (s[i] === ')') depth--
    else if (s[i] === ',' && depth === 0) {
      parts.push(s.slice(start, i))
      start = i + 1
    }
  }
  parts.push(s.slice(start))
  return parts.map((p) => p.trim())
}

function parseLabelRequirement(part: string, whole: string): Requirement {
  const checkKey = (key: string): string => {
    if (key.length > 316 || !labelKey.test(key)) throw bad('label', whole, `invalid label key "${key.slice(0, 80)}"`)
    return key
  }
  const checkValue = (value: string): string => {
    if (value.length > 63 || !labelValue.test(value)) throw bad('label', whole, `invalid label value "${value.slice(0, 80)}"`)
    return value
  }
  const set = /^(\S+)\s+(in|notin)\s*\(([^()]*)\)$/.exec(part)
  if (set) {
    const values = set[3]!.split(',').map((v) => checkValue(v.trim()))
    return { op: set[2] === 'in' ? 'in' : 'notin', key: checkKey(set[1]!), values }
  }
  const cmp = /^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(part)
  if (cmp) return { op: cmp[2] === '!=' ? 'neq' : 'eq', key: checkKey(cmp[1]!), value: checkValue(cmp[3]!) }
  if (part.startsWith('!')) return { op: 'notexists', key: checkKey(part.slice(1).trim()) }
  if (/^\S+$/.test(part)) return { op: 'exists', key: checkKey(part) }
  throw bad('label', whole, `cannot parse "${part.slice(0, 80)}"`)
}

function matches(reqs: Requirement[]): Matcher {
  return (values) =>
    reqs.every((r) => {
      const has = Object.hasOwn(values, r.key)
      const v = has ? values[r.key] : undefined
      switch (r.op) {
        case 'exists':
          return has
        case 'notexists':
          return !has
        case 'eq':
          return v === r.value
        case 'neq':
          return v !== r.value
        case 'in':
          return v !== undefined && r.values.includes(v)
        case 'notin':
          return v === undefined || !r.values.includes(v)
      }
    })
}

/** Parses a labelSelector; an empty or absent one matches everything. */
export function parseLabelSelector(selector: string | null | undefined): Matcher {
  if (!selector || !selector.trim()) return () => true
  if (selector.length > MAX_SELECTOR) throw bad('label', selector, `longer than ${MAX_SELECTOR} characters`)
  return matches(splitTop(selector).map((p) => parseLabelRequirement(p, selector)))
}

/** Parses a fieldSelector over the fields `supported` lists; others are a 400 as on a real server. */
export function parseFieldSelector(selector: string | null | undefined, supported: readonly string[]): Matcher {
  if (!selector || !selector.trim()) return () => true
  if (selector.length > MAX_SELECTOR) throw bad('field', selector, `longer than ${MAX_SELECTOR} characters`)
  const reqs = splitTop(selector).map((part): Requirement => {
    const m = /^([A-Za-z.]+)\s*(==|=|!=)\s*(.*)$/.exec(part)
    if (!m) throw bad('field', selector, `"${part.slice(0, 80)}" is not <field>=<value> or <field>!=<value>`)
    if (!supported.includes(m[1]!)) throw new KubeError('BadRequest', `field label not supported: ${m[1]}`)
    return { op: m[2] === '!=' ? 'neq' : 'eq', key: m[1]!, value: m[3]!.trim() }
  })
  return matches(reqs)
}
