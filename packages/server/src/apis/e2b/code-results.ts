/**
 * codebox's execution output in the shapes of E2B's code interpreter (`@e2b/code-interpreter`
 * reads them as NDJSON lines): a display bundle becomes a `result` object (`text`, `html`, `png`,
 * `chart`, ..., `is_main_result`), a cell's error an `error` line, and paths and languages are
 * mapped between E2B's names and codebox's.
 */
import path from 'node:path/posix'
import { validationError, type MimeBundle } from '@codebox/core'
import { CHART_MIME, DATA_MIME, type KernelLanguage } from '@codebox/sandbox'

/** E2B's home directory, which is codebox's workspace. */
export const E2B_HOME = '/home/user'
const WORKSPACE = '/workspace'

/** Mime types of a bundle and the fields of E2B's result they fill. */
const resultFields: Record<string, string> = {
  'text/plain': 'text',
  'text/html': 'html',
  'text/markdown': 'markdown',
  'image/svg+xml': 'svg',
  'image/png': 'png',
  'image/jpeg': 'jpeg',
  'application/pdf': 'pdf',
  'text/latex': 'latex',
  'application/json': 'json',
  'application/javascript': 'javascript',
}

/** JSON text a result carries parsed (`json`, `chart`) is at most this long; longer stays text, or (a chart) is dropped. */
const MAX_PARSED_CHARS = 1024 * 1024

/** One display of a cell as E2B's `result` line. Everything in it came from the sandbox: JSON is parsed within bounds, never trusted. */
export function resultOf(data: MimeBundle, isMainResult: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = { type: 'result' }
  for (const [mime, value] of Object.entries(data)) {
    const field = resultFields[mime]
    if (mime === CHART_MIME || mime === DATA_MIME) {
      const parsed = parseBounded(value)
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) out[mime === CHART_MIME ? 'chart' : 'data'] = parsed
    } else if (field === 'json') {
      // E2B's server sends a JSON display as the value itself, as Jupyter does.
      const parsed = parseBounded(value)
      out.json = parsed === undefined ? value : parsed
    } else if (field !== undefined) out[field] = value
    // Other mime types pass under their own names: the SDK keeps them in `extra`.
    else if (!(mime in out)) out[mime] = value
  }
  out.is_main_result = isMainResult
  return out
}

function parseBounded(text: string): unknown {
  if (text.length > MAX_PARSED_CHARS) return undefined
  try {
    return JSON.parse(text) as unknown
  } catch {
    return undefined
  }
}

/** What E2B's languages run on here: a codebox kernel language, `bash` (a persistent shell) among them. */
export type CodeLanguage = KernelLanguage

const languageNames: Record<string, CodeLanguage> = {
  python: 'python',
  py: 'python',
  javascript: 'javascript',
  js: 'javascript',
  typescript: 'typescript',
  ts: 'typescript',
  bash: 'bash',
  sh: 'bash',
  shell: 'bash',
}

/** The language an E2B request names; ValidationError for one codebox does not run (r, java, ...). */
export function languageOf(value: unknown, field = 'language'): CodeLanguage {
  if (value === undefined || value === null || value === '') return 'python'
  const name = typeof value === 'string' ? languageNames[value.toLowerCase()] : undefined
  if (name === undefined) {
    throw validationError(field, `${JSON.stringify(value)} is not a language codebox runs; use python, javascript, typescript or bash`)
  }
  return name
}

/**
 * A path of E2B's user in the sandbox: `/home/user` (and what is under it) is the workspace,
 * a relative path is relative to it, other absolute paths stay as they are.
 */
export function toSandboxPath(p: string): string {
  const abs = path.normalize(path.isAbsolute(p) ? p : path.join(E2B_HOME, p))
  if (abs === E2B_HOME || abs.startsWith(`${E2B_HOME}/`)) return WORKSPACE + abs.slice(E2B_HOME.length)
  return abs
}

/** A sandbox path as E2B's user sees it: the workspace is `/home/user`. */
export function toE2bPath(p: string): string {
  if (p === WORKSPACE || p.startsWith(`${WORKSPACE}/`)) return E2B_HOME + p.slice(WORKSPACE.length)
  return p
}

/** Whether `name` can be a shell variable (an exported one must be). */
export const isShellName = (name: string): boolean => /^[A-Za-z_][A-Za-z0-9_]*$/.test(name)
