/** `codebox exec`: runs one piece of code (or a shell command) in a new session and prints it. */
import { readFileSync } from 'node:fs'
import { languages, validationError, type Language } from '@codebox/core'
import { createEngine, type EngineConfig } from '@codebox/sandbox'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import { render } from '../render.ts'

const spec: FlagSpec = {
  language: { short: 'l', type: 'string', description: `python (default), javascript or typescript` },
  command: { short: 'c', type: 'boolean', description: 'run the argument as a shell command instead' },
  file: { short: 'f', type: 'string', description: 'read the code from a file (- for stdin)' },
  timeout: { type: 'string', description: 'seconds before the call is killed (default 300)' },
  'out-dir': { type: 'string', description: 'where images are saved (default .)' },
  json: { type: 'boolean', description: 'print the result as JSON' },
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const usage = helpText('codebox exec [-l LANG] CODE | -f FILE | -c COMMAND', spec, [
  `codebox exec -l python 'import pandas as pd; print(pd.DataFrame({"a":[1,2]}).sum())'`,
  `codebox exec -l typescript 'const x: number = 41; console.log(x + 1)'`,
  `codebox exec -c 'uname -a && ls -la'`,
  `echo 'print(2**100)' | codebox exec -f -`,
])

export async function run(argv: string[], config: EngineConfig): Promise<number> {
  const { flags, positionals } = parseArgs(argv, spec)
  if (flags.help) {
    process.stdout.write(usage)
    return 0
  }
  const code = flags.file !== undefined ? readFileSync(flags.file === '-' ? 0 : String(flags.file), 'utf8') : positionals.join(' ')
  if (!code.trim()) {
    process.stderr.write(usage)
    return 64
  }
  const language = String(flags.language ?? 'python')
  if (!(languages as readonly string[]).includes(language)) throw validationError('--language', `must be one of ${languages.join(', ')}, got ${language}`)
  const timeoutMs = flags.timeout !== undefined ? Number(flags.timeout) * 1000 : undefined
  const engine = await createEngine(config, { poolSize: 0 })
  try {
    await using session = await engine.start()
    const events = flags.command ? session.streamCommand(code, { timeoutMs }) : session.executeCode({ code, language: language as Language, timeoutMs })
    const result = await render(events, { outDir: String(flags['out-dir'] ?? '.'), json: flags.json === true })
    return result.structuredContent.exitCode === 0 && !result.isError ? 0 : Math.min(result.structuredContent.exitCode || 1, 255)
  } finally {
    await engine.close()
  }
}
