/** The codebox command line: one file per command under commands/, dispatched here. */
import { isCodeboxError } from '@codebox/core'
import { loadEngineConfig } from '@codebox/sandbox'
import * as demo from './commands/demo.ts'
import * as exec from './commands/exec.ts'
import * as image from './commands/image.ts'
import * as repl from './commands/repl.ts'

const commands: Record<string, { run: (argv: string[], config: ReturnType<typeof loadEngineConfig>) => Promise<number>; summary: string }> = {
  exec: { run: exec.run, summary: 'run code or a shell command in a new session' },
  repl: { run: repl.run, summary: 'an interactive session: many cells, state kept' },
  image: { run: image.run, summary: 'build the sandbox image (image build)' },
  demo: { run: demo.run, summary: 'a short tour of a session' },
}

const help = `codebox — a self-hosted code interpreter for AI agents

Usage: codebox <command> [options]     (codebox <command> --help for each)

Commands:
${Object.entries(commands)
  .map(([n, c]) => `  ${n.padEnd(8)} ${c.summary}`)
  .join('\n')}

Exit codes: 0 success; the code's own exit code when it failed; 64 usage error;
69 something required is missing (image, tool); 70 internal error.
`

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help)
    return name ? 0 : 64
  }
  const command = commands[name]
  if (!command) {
    process.stderr.write(`codebox: unknown command ${JSON.stringify(name)}\n\n${help}`)
    return 64
  }
  try {
    return await command.run(rest, loadEngineConfig(process.env))
  } catch (e) {
    if (isCodeboxError(e)) {
      process.stderr.write(`codebox: ${e.code}: ${e.message}\n`)
      return e.code === 'ValidationError' ? 64 : e.code === 'Unavailable' ? 69 : 70
    }
    process.stderr.write(`codebox: ${(e as Error).stack ?? String(e)}\n`)
    return 70
  }
}

process.exitCode = await main(process.argv.slice(2))
