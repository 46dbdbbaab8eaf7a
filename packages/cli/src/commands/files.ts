/** `codebox files put|get|ls|rm`: move files in and out of a session, streamed. */
import path from 'node:path'
import { validationError } from '@codebox/core'
import { CodeInterpreter } from '@codebox/sdk'
import { downloadFileToPath, uploadFileFromPath } from '@codebox/sdk/node'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import { clientFlags, clientOptions, type CommandContext } from '../context.ts'
import { table } from '../render.ts'

const spec: FlagSpec = {
  recursive: { short: 'r', type: 'boolean', description: 'ls: walk subdirectories; rm: remove a directory and its contents' },
  ...clientFlags,
  json: { type: 'boolean', description: 'print JSON' },
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const usage = helpText('codebox files put ID LOCAL [REMOTE] | get ID REMOTE [LOCAL] | ls ID [PATH] [-r] | rm ID PATH [-r]', spec, [
  'codebox files put "$id" data.csv                 # to data.csv in the session workspace',
  'codebox files get "$id" out.png                  # to ./out.png',
  'codebox files ls "$id" -r',
  'codebox files rm "$id" results -r',
])

export async function run(argv: string[], ctx: CommandContext): Promise<number> {
  const { flags, positionals } = parseArgs(argv, spec)
  const [sub, id, a, b] = positionals
  if (flags.help || !sub) {
    process.stdout.write(usage)
    return flags.help ? 0 : 64
  }
  if (!id) throw validationError('ID', 'name the session (codebox sessions ls)')
  const ci = new CodeInterpreter({ ...clientOptions(flags, ctx), sessionId: id })
  const out = (value: unknown, human: string): void => void process.stdout.write(flags.json ? `${JSON.stringify(value)}\n` : `${human}\n`)
  switch (sub) {
    case 'put': {
      if (!a) throw validationError('LOCAL', 'name the local file to upload')
      const r = await uploadFileFromPath(ci, a, b ?? path.basename(a))
      out(r, `uploaded ${a} → ${r.path} (${r.size} bytes)`)
      return 0
    }
    case 'get': {
      if (!a) throw validationError('REMOTE', 'name the file in the session')
      const local = b ?? path.basename(a)
      const r = await downloadFileToPath(ci, a, local)
      out(r, `downloaded ${a} → ${local} (${r.size} bytes, ${r.mimeType})`)
      return 0
    }
    case 'ls': {
      const { items } = await ci.listFileEntries(a ?? '', { recursive: flags.recursive === true })
      if (flags.json) out(items, '')
      else
        process.stdout.write(
          table(
            ['TYPE', 'SIZE', 'MODIFIED', 'PATH'],
            items.map((e) => [e.type, String(e.size), e.modifiedAt, e.path]),
          ),
        )
      return 0
    }
    case 'rm': {
      if (!a) throw validationError('PATH', 'name the file or directory to remove')
      await ci.deleteFile(a, { recursive: flags.recursive === true })
      out({ removed: a }, `removed ${a}`)
      return 0
    }
    default:
      process.stderr.write(`codebox files: unknown subcommand ${JSON.stringify(sub)}\n\n${usage}`)
      return 64
  }
}
