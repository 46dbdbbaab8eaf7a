/** `codebox demo`: a short session on the server that shows state, data, a chart, TypeScript and files. */
import type { Language } from '@codebox/core'
import { codeSession } from '@codebox/sdk'
import { parseArgs } from '../args.ts'
import { clientFlags, clientOptions, type CommandContext } from '../context.ts'
import { render } from '../render.ts'

const cells: { language: Language; code: string; note: string }[] = [
  { language: 'python', note: 'state is kept between cells', code: 'x = 41' },
  { language: 'python', note: 'the last expression is shown, like a notebook', code: 'x + 1' },
  {
    language: 'python',
    note: 'pandas',
    code: 'import pandas as pd\ndf = pd.DataFrame({"city": ["Seoul", "Tokyo", "Osaka"], "sales": [120, 95, 80]})\nprint(df.describe())',
  },
  {
    language: 'python',
    note: 'a matplotlib chart comes back as a PNG',
    code: 'import matplotlib.pyplot as plt\ndf.plot.bar(x="city", y="sales")\nplt.title("sales")\nplt.show()',
  },
  {
    language: 'typescript',
    note: 'TypeScript, with top-level await',
    code: 'const wait = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))\nawait wait(10)\nconst total: number = [120, 95, 80].reduce((a, b) => a + b)\nconsole.log(`total ${total}`)',
  },
  { language: 'python', note: 'errors come back as data', code: 'df["missing"]' },
]

export async function run(argv: string[], ctx: CommandContext): Promise<number> {
  const { flags } = parseArgs(argv, clientFlags)
  const t0 = performance.now()
  await using session = await codeSession(clientOptions(flags, ctx))
  process.stdout.write(`session ${session.sessionId} started in ${(performance.now() - t0).toFixed(0)} ms\n`)
  for (const cell of cells) {
    process.stdout.write(`\n# ${cell.note} (${cell.language})\n${cell.code.replace(/^/gm, '> ')}\n`)
    const r = await render(session.executeCodeStream(cell), { outDir: '.', json: false })
    process.stdout.write(`[exit ${r.structuredContent.exitCode}, ${r.structuredContent.executionTime.toFixed(1)} ms${r.isError ? ', isError' : ''}]\n`)
  }
  await session.uploadFile('notes/hello.txt', 'written through the file API\n')
  process.stdout.write(`\n# files in the workspace\n`)
  for (const f of (await session.listFileEntries('', { recursive: true })).items)
    process.stdout.write(`${f.type.padEnd(10)} ${String(f.size).padStart(8)}  ${f.path}\n`)
  process.stdout.write('\ndemo done: try `npx codebox repl -l python` or `npx codebox exec --help`\n')
  return 0
}
