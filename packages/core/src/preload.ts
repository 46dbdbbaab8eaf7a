/**
 * An interpreter's preload: the Python modules a session's kernel has imported before the session
 * is handed over, so a first data cell finds them in sys.modules instead of paying the import.
 */
import { validationError } from './errors.ts'

/**
 * What the built-in interpreter preloads: the data stack a first cell reaches for. With
 * `matplotlib.pyplot` the kernel also draws and closes a warm-up plot (Agg backend), which absorbs
 * matplotlib's one-time first-plot setup.
 */
export const defaultPreload: readonly string[] = Object.freeze(['numpy', 'pandas', 'matplotlib.pyplot'])

/** Most modules one interpreter may preload. */
export const maxPreloadModules = 32

/** A dotted Python module name (`pandas`, `matplotlib.pyplot`): identifiers only, nothing to run. */
export const moduleNamePattern = /^[A-Za-z_][A-Za-z0-9_]{0,99}(\.[A-Za-z_][A-Za-z0-9_]{0,99}){0,7}$/

/** Why `name` is not a module name a preload may carry, or undefined when it is one. */
export function moduleNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `must be a module name (a string), got ${typeof name}`
  if (name.length > 200 || !moduleNamePattern.test(name)) {
    return `${JSON.stringify(name.slice(0, 200))} is not a Python module name (dotted identifiers such as numpy or matplotlib.pyplot)`
  }
  return undefined
}

/**
 * A preload list checked and normalised (duplicates dropped, order kept); a ValidationError names
 * the first bad entry and its position under `field`.
 */
export function checkPreload(modules: readonly unknown[], field = 'preload'): string[] {
  if (modules.length > maxPreloadModules) throw validationError(field, `has ${modules.length} modules; at most ${maxPreloadModules}`)
  modules.forEach((m, i) => {
    const problem = moduleNameProblem(m)
    if (problem) throw validationError(`${field}[${i}]`, problem)
  })
  return [...new Set(modules as string[])]
}
