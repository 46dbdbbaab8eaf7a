/** The codebox command line: one file per command under commands/, dispatched here. */
import { isCodeboxError, type ErrorCode } from '@codebox/core'
import * as agent from './commands/agent.ts'
import * as audit from './commands/audit.ts'
import * as demo from './commands/demo.ts'
import * as exec from './commands/exec.ts'
import * as files from './commands/files.ts'
import * as image from './commands/image.ts'
import * as invoke from './commands/invoke.ts'
import * as interpreters from './commands/interpreters.ts'
import * as keys from './commands/keys.ts'
import * as kubernetes from './commands/kubernetes.ts'
import * as mcp from './commands/mcp.ts'
import * as repl from './commands/repl.ts'
import * as runtimes from './commands/runtimes.ts'
import * as serve from './commands/serve.ts'
import * as sessions from './commands/sessions.ts'
import * as store from './commands/store.ts'
import type { CommandContext } from './context.ts'

type Command = { run: (argv: string[], ctx: CommandContext) => Promise<number>; summary: string }

const commands: Record<string, Command> = {
  serve: { run: serve.run, summary: 'run the server: API, reference page, metrics (npm start does this)' },
  sessions: { run: sessions.run, summary: 'start, list, show and stop sessions' },
  exec: { run: exec.run, summary: 'run code or a shell command (in --session, or a new session)' },
  files: { run: files.run, summary: 'put, get, list and remove files of a session' },
  repl: { run: repl.run, summary: 'an interactive session: many cells, state kept' },
  agent: { run: agent.run, summary: 'ask the agent in plain language; it runs code to answer (no prompt: a chat)' },
  invoke: { run: invoke.run, summary: 'post a raw payload to /invocations (the AgentCore Runtime contract), like agentcore invoke' },
  mcp: { run: mcp.run, summary: 'serve the agent tools over MCP on stdio (claude mcp add codebox -- npx codebox mcp)' },
  audit: { run: audit.run, summary: 'what ran, when, by whom, how it ended' },
  interpreters: { run: interpreters.run, summary: 'list, create and remove interpreter configurations' },
  runtimes: { run: runtimes.run, summary: 'deploy agents as versioned runtimes; list, roll back, remove; their secrets' },
  keys: { run: keys.keys, summary: 'create, list and revoke API keys (on the server machine)' },
  tenants: { run: keys.tenants, summary: 'list tenants and set their quotas (on the server machine)' },
  store: { run: store.run, summary: 'copy a SQLite store into PostgreSQL (store migrate; on the server machine)' },
  kubernetes: { run: kubernetes.run, summary: 'run the egress proxy of a network profile on a Kubernetes cluster (kubernetes egress-proxy)' },
  image: { run: image.run, summary: 'build the sandbox image (image build), or export it as an OCI image layout (image export --oci)' },
  demo: { run: demo.run, summary: 'a short tour of a session on the server' },
}

const help = `codebox — a self-hosted code interpreter for AI agents

Usage: codebox <command> [options]     (codebox <command> --help for each, with examples)

Commands:
${Object.entries(commands)
  .map(([n, c]) => `  ${n.padEnd(13)} ${c.summary}`)
  .join('\n')}

Commands that talk to a server use --url (CODEBOX_URL, default http://127.0.0.1:8080) and
--api-key (CODEBOX_API_KEY); commands that print results take --json for scripts.

Exit codes: 0 success; the code's own exit code when it failed; 64 bad usage or input;
66 not found (or the session ended); 69 unavailable (server down, image missing, no model or
every model down); 70 internal error; 71 the server's machine has no room for the session
(smaller limits, or later); 75 rate limited or over quota (try later); 77 not authorized;
130 canceled (Ctrl-C, or the turn was stopped).
`

/** The exit code for an error code; docs/cli.md lists them. */
function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case 'ValidationError':
    case 'LimitExceeded':
    case 'Conflict':
      return 64
    case 'NotFound':
    case 'SessionTerminated':
      return 66
    case 'Unavailable':
    case 'ModelNotConfigured':
    case 'ModelUnavailable':
      return 69
    case 'HostCapacity':
      return 71
    case 'RateLimited':
    case 'QuotaExceeded':
    case 'RequestTimeout':
    case 'Timeout':
      return 75
    case 'Unauthorized':
    case 'Forbidden':
      return 77
    case 'Canceled':
      return 130
    case 'SandboxFailure':
    case 'Internal':
      return 70
  }
}

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
    return await command.run(rest, { env: process.env })
  } catch (e) {
    if (isCodeboxError(e)) {
      process.stderr.write(`codebox: ${e.code}: ${e.message}\n`)
      return exitCodeFor(e.code)
    }
    process.stderr.write(`codebox: ${(e as Error).stack ?? String(e)}\n`)
    return 70
  }
}

process.exitCode = await main(process.argv.slice(2))
