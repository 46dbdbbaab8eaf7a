/**
 * `codebox invoke`: posts a raw payload to the server's `/invocations` (the AgentCore Runtime
 * contract), as `agentcore invoke` does, and prints the answer: the JSON pretty-printed, or with
 * `--stream` each event as one JSON line. For testing an agent's contract; `codebox agent` is the
 * readable way to ask.
 */
import { readFileSync } from 'node:fs'
import { isCodeboxError, validationError } from '@codebox/core'
import { AgentClient } from '@codebox/sdk'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import { clientFlags, clientOptions, type CommandContext } from '../context.ts'

const spec: FlagSpec = {
  'session-id': { type: 'string', description: 'X-Amzn-Bedrock-AgentCore-Runtime-Session-Id: the conversation (default a new one)' },
  'user-id': { type: 'string', description: 'X-Amzn-Bedrock-AgentCore-Runtime-User-Id: the actor (default the API key)' },
  stream: { type: 'boolean', description: 'ask for Server-Sent Events and print each event as a JSON line' },
  file: { short: 'f', type: 'string', description: 'read the payload from a file (- for stdin)' },
  ...clientFlags,
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const usage = helpText("codebox invoke '<json payload>' [--session-id ID] [--user-id U] [--stream]", spec, [
  `codebox invoke '{"prompt": "how many leap years between 2000 and 2024?"}'`,
  `codebox invoke --stream '{"prompt": "plot a sine wave"}'`,
  `codebox invoke --session-id "$id" '{"prompt": "and the year after?"}'`,
  `echo '{"input": {"prompt": "2**100?"}}' | codebox invoke -f -`,
])

export async function run(argv: string[], ctx: CommandContext): Promise<number> {
  const { flags, positionals } = parseArgs(argv, spec)
  if (flags.help) {
    process.stdout.write(usage)
    return 0
  }
  const text = flags.file !== undefined ? readFileSync(flags.file === '-' ? 0 : String(flags.file), 'utf8') : positionals.join(' ')
  if (!text.trim()) {
    process.stderr.write(usage)
    return 64
  }
  let payload: unknown
  try {
    payload = JSON.parse(text)
  } catch (e) {
    throw validationError('payload', `is not JSON (${(e as Error).message}); e.g. '{"prompt": "hello"}'`)
  }
  const agent = new AgentClient(clientOptions(flags, ctx))
  const options = {
    ...(flags['session-id'] !== undefined ? { sessionId: String(flags['session-id']) } : {}),
    ...(flags['user-id'] !== undefined ? { userId: String(flags['user-id']) } : {}),
  }
  if (!flags.stream) {
    const answer = await agent.invoke(payload, options)
    process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`)
    process.stderr.write(`session ${answer.conversationId}\n`)
    return 0
  }
  const events = agent.invokeStream(payload, options)
  try {
    for (;;) {
      const next = await events.next()
      if (next.done) {
        process.stderr.write(`session ${next.value.conversationId}\n`)
        return 0
      }
      process.stdout.write(`${JSON.stringify(next.value)}\n`)
    }
  } catch (e) {
    if (isCodeboxError(e)) process.stdout.write(`${JSON.stringify({ type: 'error', code: e.code, message: e.message })}\n`)
    throw e
  }
}
