/**
 * `codebox agent`: ask the codebox agent in plain language and watch it work: its text as it
 * streams, each tool call with its code, output and result, the final answer and the model that
 * gave it. One prompt is one turn; no prompt starts a chat (one conversation, many turns).
 */
import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { isCodeboxError, validationError, type AgentEvent, type CodeboxError, type ModelSkip } from '@codebox/core'
import { AgentClient } from '@codebox/sdk'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import { clientFlags, clientOptions, type CommandContext } from '../context.ts'

const spec: FlagSpec = {
  session: { short: 's', type: 'string', description: 'continue this conversation (its id is printed after each answer)' },
  model: { short: 'm', type: 'string', description: "try this model of the server's chain first (provider:model; see GET /v1/agent/status)" },
  'code-session': { type: 'string', description: "run the code in this session of yours (its files and variables), not the conversation's own" },
  json: { type: 'boolean', description: 'print the events as NDJSON (one JSON object per line)' },
  generate: { short: 'g', type: 'boolean', description: 'generate code to edit instead of answering (the code is printed, not run)' },
  language: { short: 'l', type: 'string', description: '--generate: python (default), javascript or typescript' },
  'save-images': { type: 'string', description: 'save the charts the code drew into this directory' },
  ...clientFlags,
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const usage =
  helpText('codebox agent [--session ID] [--model M] [--code-session ID] [--json] [--generate [-l LANG]] [PROMPT...]', spec, [
    `codebox agent "how many leap years between 2000 and 2024?"`,
    `codebox agent --session "$id" "and between 1900 and 2000?"     # continue the conversation`,
    `codebox agent -m openai:llama3.2 "what is 2**100?"            # this model first, the chain after it`,
    `codebox agent --code-session "$sid" "summarise data.csv"       # work in your session, with its files`,
    `codebox agent --save-images charts "plot y = x^2 for x in 0..10"`,
    `codebox agent --generate -l typescript "read data.csv and sum column b"`,
    `codebox agent --json "what is 2**100?" | jq -c 'select(.type == "tool_use")'`,
    `codebox agent                                   # a chat: one prompt per line; Ctrl-C cancels a turn, Ctrl-D exits`,
  ]) +
  `
The server needs a model (CODEBOX_AGENT_MODELS on the server; see docs/agent.md); without one
this command prints what to set and exits 69.
`

const languages = ['python', 'javascript', 'typescript'] as const
type GenerateLanguage = (typeof languages)[number]

interface TurnOptions {
  agent: AgentClient
  json: boolean
  generate: GenerateLanguage | undefined
  imagesDir: string | undefined
  model: string | undefined
  codeSession: string | undefined
  signal?: AbortSignal
}

export async function run(argv: string[], ctx: CommandContext): Promise<number> {
  const { flags, positionals } = parseArgs(argv, spec)
  if (flags.help) {
    process.stdout.write(usage)
    return 0
  }
  const language = flags.language === undefined ? undefined : String(flags.language)
  if (language !== undefined && !(languages as readonly string[]).includes(language))
    throw validationError('--language', `must be one of ${languages.join(', ')}, got ${language}`)
  if (language !== undefined && !flags.generate) throw validationError('--language', 'only goes with --generate')
  if (flags['code-session'] !== undefined && flags.generate) throw validationError('--code-session', 'does not go with --generate (generated code is not run)')
  const options: TurnOptions = {
    agent: new AgentClient(clientOptions(flags, ctx)),
    json: flags.json === true,
    generate: flags.generate ? ((language ?? 'python') as GenerateLanguage) : undefined,
    imagesDir: flags['save-images'] === undefined ? undefined : String(flags['save-images']),
    model: flags.model === undefined ? undefined : String(flags.model),
    codeSession: flags['code-session'] === undefined ? undefined : String(flags['code-session']),
  }
  const session = flags.session === undefined ? undefined : String(flags.session)
  const prompt = positionals.join(' ').trim()
  if (prompt) {
    const conversationId = await turn(prompt, session, options)
    process.stderr.write(`conversation ${conversationId}   (continue: codebox agent --session ${conversationId} "...")\n`)
    return 0
  }
  return chat(session, options)
}

/** Runs one turn and prints it; returns the conversation id. */
async function turn(prompt: string, conversationId: string | undefined, options: TurnOptions): Promise<string> {
  const call = {
    ...(conversationId !== undefined ? { conversationId } : {}),
    ...(options.model !== undefined ? { model: options.model } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  }
  const events = options.generate
    ? options.agent.generateStream(prompt, { ...call, language: options.generate })
    : options.agent.ask(prompt, { ...call, ...(options.codeSession !== undefined ? { sessionId: options.codeSession } : {}) })
  const printer = new TurnPrinter(options)
  try {
    for (;;) {
      const next = await events.next()
      if (next.done) {
        if (options.generate && !options.json && 'code' in next.value)
          process.stdout.write(next.value.code.endsWith('\n') ? next.value.code : `${next.value.code}\n`)
        return next.value.conversationId
      }
      await printer.event(next.value)
    }
  } catch (e) {
    printer.endLine()
    if (options.json && isCodeboxError(e)) process.stdout.write(`${JSON.stringify({ type: 'error', code: e.code, message: e.message })}\n`)
    throw e
  }
}

/**
 * A chat: each line of input is a turn of one conversation. On a terminal, Ctrl-C during a turn
 * cancels that turn and Ctrl-C or Ctrl-D at the prompt exits; piped input is read line by line.
 */
async function chat(session: string | undefined, options: TurnOptions): Promise<number> {
  const tty = process.stdin.isTTY === true
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: tty, prompt: tty ? 'you> ' : '' })
  if (tty) process.stderr.write('codebox agent: ask anything; Ctrl-C cancels a turn, Ctrl-D or Ctrl-C at the prompt exits.\n')
  let conversationId = session
  let running: AbortController | undefined
  let lastError: CodeboxError | undefined
  rl.on('SIGINT', () => {
    if (running) running.abort()
    else rl.close()
  })
  let closed = false
  rl.once('close', () => (closed = true))
  const prompt = (): void => {
    if (tty && !closed) rl.prompt()
  }
  try {
    prompt()
    for await (const line of rl) {
      const text = line.trim()
      if (!text) {
        prompt()
        continue
      }
      running = new AbortController()
      try {
        conversationId = await turn(text, conversationId, { ...options, signal: running.signal })
      } catch (e) {
        if (running.signal.aborted) process.stderr.write('[turn canceled]\n')
        else if (!isCodeboxError(e) || fatal(e)) throw e
        else {
          process.stderr.write(`codebox: ${e.code}: ${e.message}\n`)
          lastError = e
        }
      } finally {
        running = undefined
      }
      prompt()
    }
  } finally {
    rl.close()
    if (conversationId) process.stderr.write(`conversation ${conversationId}   (continue: codebox agent --session ${conversationId})\n`)
  }
  // A script learns that a turn failed from the exit code (the last failure's).
  if (lastError && !tty) throw lastError
  return 0
}

/** Errors after which no further turn can succeed: stop the chat. */
function fatal(e: CodeboxError): boolean {
  return ['ModelNotConfigured', 'Unauthorized', 'Forbidden', 'Unavailable'].includes(e.code)
}

/** Prints a turn's events for a person (or as NDJSON with --json). */
class TurnPrinter {
  readonly #options: TurnOptions
  #atLineStart = true
  /** Whether model text was printed since the last tool call (else `final` prints its text). */
  #textShown = false
  #streamed = new Set<string>()
  #images = 0

  constructor(options: TurnOptions) {
    this.#options = options
  }

  async event(e: AgentEvent): Promise<void> {
    if (this.#options.json) {
      process.stdout.write(`${JSON.stringify(e)}\n`)
      if (e.type === 'tool_result') await this.#saveImages(e.images, false)
      return
    }
    switch (e.type) {
      case 'turn_start':
        return
      case 'model':
        if (e.skipped.length) this.#note(`[model ${e.model}; skipped ${skippedText(e.skipped)}]`)
        return
      case 'text':
        // The generate role prints its code at the end; its prose goes to stderr meanwhile.
        if (this.#options.generate) return void process.stderr.write(e.delta)
        this.#write(e.delta)
        this.#textShown = true
        return
      case 'tool_use':
        this.endLine()
        this.#write(`\n--- ${e.name}${e.language ? ` (${e.language})` : ''} ---\n`)
        this.#write(e.code ?? JSON.stringify(e.input, null, 2))
        this.endLine()
        this.#write(`--- output ---\n`)
        this.#textShown = false
        return
      case 'tool_output':
        this.#streamed.add(e.toolUseId)
        if (e.stream === 'stderr') process.stderr.write(e.text)
        else this.#write(e.text)
        return
      case 'tool_result':
        if (!this.#streamed.has(e.toolUseId) && e.text) this.#write(e.text)
        this.endLine()
        this.#write(`--- ${e.isError ? 'failed' : 'done'}${e.exitCode !== undefined ? `, exit code ${e.exitCode}` : ''} ---\n`)
        await this.#saveImages(e.images, true)
        this.#write('\n')
        return
      case 'final':
        if (!this.#textShown && !this.#options.generate) this.#write(e.text)
        this.endLine()
        if (this.#options.generate) process.stderr.write('\n')
        this.#note(
          `[answered by ${e.model}${e.skipped.length ? `; skipped ${skippedText(e.skipped)}` : ''}; ${e.usage.inputTokens} in / ${e.usage.outputTokens} out tokens]`,
        )
        return
      case 'error':
        return
    }
  }

  /** Ends the current stdout line, if one is open. */
  endLine(): void {
    if (!this.#atLineStart) this.#write('\n')
  }

  #write(text: string): void {
    if (!text) return
    process.stdout.write(text)
    this.#atLineStart = text.endsWith('\n')
  }

  /** Writes `codebox-agent-image-N.EXT` with the first N not taken, so earlier charts are kept. */
  async #saveNew(bytes: Buffer, ext: string): Promise<string> {
    const dir = this.#options.imagesDir!
    await mkdir(dir, { recursive: true })
    for (;;) {
      const file = path.join(dir, `codebox-agent-image-${++this.#images}.${ext}`)
      try {
        await writeFile(file, bytes, { flag: 'wx' })
        return file
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
      }
    }
  }

  #note(text: string): void {
    process.stderr.write(`${text}\n`)
  }

  async #saveImages(images: { mimeType: string; data: string }[], print: boolean): Promise<void> {
    for (const image of images) {
      const bytes = Buffer.from(image.data, 'base64')
      const kind = (image.mimeType.split('/')[1] ?? 'bin').toUpperCase()
      let saved = ''
      if (this.#options.imagesDir !== undefined) {
        saved = ` saved to ${await this.#saveNew(bytes, kind === 'JPEG' ? 'jpg' : kind.toLowerCase())}`
      }
      if (print) this.#write(`[image: ${Math.max(1, Math.round(bytes.length / 1024))} KB ${kind}${saved}]\n`)
      else if (saved) this.#note(`[image${saved}]`)
    }
  }
}

function skippedText(skipped: ModelSkip[]): string {
  return skipped.map((s) => `${s.model} (${s.reason})`).join(', ')
}
