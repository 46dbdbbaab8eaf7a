/** `codebox repl`: one session, many cells, state kept between them. */
import { createInterface } from 'node:readline'
import { languages, type Language } from '@codebox/core'
import { CodeInterpreter } from '@codebox/sdk'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import { clientFlags, clientOptions, type CommandContext } from '../context.ts'
import { render } from '../render.ts'

const spec: FlagSpec = {
  language: { short: 'l', type: 'string', description: 'python (default), javascript or typescript' },
  session: { short: 's', type: 'string', description: 'use this session (default a new one, stopped on exit)' },
  'out-dir': { type: 'string', description: 'where images are saved (default .)' },
  ...clientFlags,
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const usage = helpText('codebox repl [-l LANG]', spec, ['codebox repl -l python', 'codebox repl -l typescript'])

const replHelp = `Commands: .help  .exit  .clear (reset the kernel)  .lang python|javascript|typescript  .sh COMMAND  .files
A cell ends at the end of a line, unless a bracket is open, the line ends with ':' or '\\', or a block
is open (then an empty line ends it).
`

/** Whether the lines so far form a complete cell. */
export function cellComplete(lines: string[]): boolean {
  const text = lines.join('\n')
  let depth = 0
  let quote: string | undefined
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    if (quote) {
      if (c === '\\') i++
      else if (text.startsWith(quote, i)) ((i += quote.length - 1), (quote = undefined))
      continue
    }
    if (c === '#' && !text.slice(0, i).includes('//')) {
      const nl = text.indexOf('\n', i)
      i = nl < 0 ? text.length : nl
      continue
    }
    if (text.startsWith('"""', i) || text.startsWith("'''", i)) ((quote = text.slice(i, i + 3)), (i += 2))
    else if (c === '"' || c === "'" || c === '`') quote = c
    else if ('([{'.includes(c)) depth++
    else if (')]}'.includes(c)) depth--
  }
  if (quote && quote.length === 3) return false
  if (quote === '`') return false
  if (depth > 0) return false
  const last = lines[lines.length - 1] ?? ''
  if (/[:\\]\s*$/.test(last)) return false
  // A block stays open until an empty line.
  if (lines.length > 1 && /^\s/.test(lines[lines.length - 1] ?? '')) return false
  if (lines.length > 1 && /:\s*$/.test(lines[0] ?? '') && last.trim() !== '') return false
  return true
}

export async function run(argv: string[], ctx: CommandContext): Promise<number> {
  const { flags } = parseArgs(argv, spec)
  if (flags.help) {
    process.stdout.write(usage)
    return 0
  }
  let language = String(flags.language ?? 'python') as Language
  if (!languages.includes(language)) {
    process.stderr.write(`codebox: --language must be one of ${languages.join(', ')}\n`)
    return 64
  }
  const outDir = String(flags['out-dir'] ?? '.')
  const session = new CodeInterpreter({ ...clientOptions(flags, ctx), ...(flags.session ? { sessionId: String(flags.session) } : {}) })
  if (!flags.session) await session.start()
  const tty = process.stdin.isTTY
  if (tty) process.stderr.write(`codebox repl: session ${session.sessionId} (${language}). .help for commands, .exit or Ctrl-D to leave.\n`)
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: tty, prompt: tty ? `${language}> ` : '' })
  let lines: string[] = []
  let clearNext = false
  let inputClosed = false
  rl.once('close', () => (inputClosed = true))
  // With piped input, readline may close while a cell still runs; prompting then would throw.
  const prompt = (text: string): void => {
    if (inputClosed) return
    rl.setPrompt(tty ? text : '')
    rl.prompt()
  }
  try {
    prompt(`${language}> `)
    for await (const line of rl) {
      if (lines.length === 0 && line.startsWith('.')) {
        const [cmd, ...rest] = line.trim().split(/\s+/)
        if (cmd === '.exit') break
        if (cmd === '.help') process.stdout.write(replHelp)
        else if (cmd === '.clear') clearNext = true
        else if (cmd === '.lang' && languages.includes(rest[0] as Language)) language = rest[0] as Language
        else if (cmd === '.sh') await render(session.executeCommandStream(line.trim().slice(4)), { outDir, json: false })
        else if (cmd === '.files')
          for (const f of (await session.listFileEntries('', { recursive: true })).items)
            process.stdout.write(`${f.type.padEnd(10)} ${String(f.size).padStart(10)}  ${f.path}\n`)
        else process.stdout.write(`unknown command ${cmd}\n${replHelp}`)
        prompt(`${language}> `)
        continue
      }
      lines.push(line)
      if (!cellComplete(lines) && !(lines.length > 1 && line.trim() === '')) {
        prompt('... ')
        continue
      }
      const code = lines.join('\n')
      lines = []
      if (code.trim()) {
        await render(session.executeCodeStream({ code, language, clearContext: clearNext }), { outDir, json: false })
        clearNext = false
      }
      prompt(`${language}> `)
    }
    if (lines.join('').trim()) await render(session.executeCodeStream({ code: lines.join('\n'), language }), { outDir, json: false })
  } finally {
    rl.close()
    if (!flags.session) await session.stop()
  }
  return 0
}
