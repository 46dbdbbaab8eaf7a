/** `codebox exec`: runs code (or a shell command) in a session on the server: a given one, or a new one stopped afterwards. */
import { readFileSync } from 'node:fs'
import { languages, validationError, type Language } from '@codebox/core'
import { CodeInterpreter } from '@codebox/sdk'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import { clientFlags, clientOptions, type CommandContext } from '../context.ts'
import { render } from '../render.ts'

const spec: FlagSpec = {
  session: { short: 's', type: 'string', description: 'run in this session (state kept); default a new session, stopped after' },
  language: { short: 'l', type: 'string', description: `python (default), javascript or typescript` },
  command: { short: 'c', type: 'boolean', description: 'run the argument as a shell command instead' },
  file: { short: 'f', type: 'string', description: 'read the code from a file (- for stdin)' },
  timeout: { type: 'string', description: 'seconds before the call is killed (default 300)' },
  'out-dir': { type: 'string', description: 'where images are saved (default .)' },
  ...clientFlags,
  json: { type: 'boolean', description: 'print the result as JSON' },
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const usage = helpText('codebox exec [--session ID] [-l LANG] CODE | -f FILE | -c COMMAND', spec, [
  `codebox exec -l python 'import pandas as pd; print(pd.DataFrame({"a":[1,2]}).sum())'`,
  `codebox exec -l typescript 'const x: number = 41; console.log(x + 1)'`,
  `codebox exec -c 'uname -a && ls -la'`,
  `echo 'print(2**100)' | codebox exec -f -`,
  `codebox exec --session "$id" -l python 'x + 1'`,
])

export async function run(argv: string[], ctx: CommandContext): Promise<number> {
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
  if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs > 0)) throw validationError('--timeout', `must be a positive number of seconds`)
  const options = clientOptions(flags, ctx)
  const ci = new CodeInterpreter({ ...options, ...(flags.session ? { sessionId: String(flags.session) } : {}) })
  if (!flags.session) await ci.start()
  try {
    const events = flags.command ? ci.executeCommandStream(code, { timeoutMs }) : ci.executeCodeStream({ code, language: language as Language, timeoutMs })
    const result = await render(events, { outDir: String(flags['out-dir'] ?? '.'), json: flags.json === true })
    return result.structuredContent.exitCode === 0 && !result.isError ? 0 : Math.min(result.structuredContent.exitCode || 1, 255)
  } finally {
    if (!flags.session) await ci.stop()
  }
}
