/** `codebox image build`: builds the sandbox image from Debian packages, with progress; cached. */
import { defaultRecipe, ensureImage, loadEngineConfig } from '@codebox/sandbox'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import type { CommandContext } from '../context.ts'

const spec: FlagSpec = {
  json: { type: 'boolean', description: 'print the image record as JSON' },
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const usage = helpText('codebox image build [--json]', spec, ['codebox image build'])

export async function run(argv: string[], ctx: CommandContext): Promise<number> {
  const config = loadEngineConfig(ctx.env)
  const { flags, positionals } = parseArgs(argv, spec)
  if (flags.help || positionals[0] !== 'build') {
    process.stdout.write(usage)
    return flags.help ? 0 : 64
  }
  const started = performance.now()
  const info = await ensureImage({
    stateDir: config.stateDir,
    recipe: defaultRecipe({ mirror: config.debianMirror }),
    onProgress: (line) => process.stderr.write(`  ${line}\n`),
  })
  if (flags.json) process.stdout.write(`${JSON.stringify({ ...info, recipe: undefined })}\n`)
  else {
    const size = `${(info.sizeBytes / 1024 ** 3).toFixed(2)} GiB`
    const time = info.cached ? `cached; built in ${info.buildSeconds} s on ${info.builtAt}` : `built in ${((performance.now() - started) / 1000).toFixed(1)} s`
    process.stdout.write(`image ${info.hash}: ${size}, ${time}\n  ${info.path}\n`)
  }
  return 0
}
