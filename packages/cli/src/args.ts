/** A small argument parser: flags with values, booleans, positionals; unknown flags are errors. */
import { validationError } from '@codebox/core'

export interface FlagSpec {
  [name: string]: { short?: string; type: 'string' | 'boolean'; description: string }
}

export interface Parsed {
  flags: Record<string, string | boolean | undefined>
  positionals: string[]
}

export function parseArgs(argv: string[], spec: FlagSpec): Parsed {
  const flags: Parsed['flags'] = {}
  const positionals: string[] = []
  const byShort = new Map(
    Object.entries(spec)
      .filter(([, s]) => s.short)
      .map(([n, s]) => [s.short!, n]),
  )
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1))
      break
    }
    if (arg.startsWith('-') && arg !== '-') {
      const [rawName, inline] = arg.startsWith('--') ? splitEq(arg.slice(2)) : [byShort.get(arg.slice(1)) ?? arg.slice(1), undefined]
      const name = rawName
      const s = spec[name]
      if (!s) throw validationError(arg, `unknown option; see --help`)
      if (s.type === 'boolean') flags[name] = true
      else {
        const value = inline ?? argv[++i]
        if (value === undefined) throw validationError(arg, 'needs a value')
        flags[name] = value
      }
    } else positionals.push(arg)
  }
  return { flags, positionals }
}

function splitEq(s: string): [string, string | undefined] {
  const i = s.indexOf('=')
  return i < 0 ? [s, undefined] : [s.slice(0, i), s.slice(i + 1)]
}

export function helpText(usage: string, spec: FlagSpec, examples: string[]): string {
  const rows = Object.entries(spec).map(
    ([n, s]) => `  ${s.short ? `-${s.short}, ` : '    '}--${n}${s.type === 'string' ? ' <value>' : ''}`.padEnd(32) + s.description,
  )
  return [`Usage: ${usage}`, '', 'Options:', ...rows, '', 'Examples:', ...examples.map((e) => `  ${e}`), ''].join('\n')
}
