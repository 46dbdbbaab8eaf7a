/**
 * `codebox agent` and `codebox invoke` end to end: the CLI as a user runs it, against a real
 * codebox server (its own process, the real agent, the real sandbox) whose model is a scripted
 * Anthropic server speaking the real Messages API. The scripted model calls execute_code and
 * answers only from what the code printed, so every number checked here was computed in a sandbox.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, readdir, rm, symlink, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { fakeKeys, modelEnv, startModelServer, type ModelRequestView, type ModelServer, type ScriptedReply } from '../../agent/test/model-servers.ts'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'

const repo = fileURLToPath(new URL('../../../', import.meta.url))
const bin = path.join(repo, 'packages/cli/bin/codebox')
const serveChild = path.join(repo, 'packages/server/test/serve-child.ts')
const model = 'claude-test-1'

interface Run {
  code: number
  stdout: string
  stderr: string
}

function codebox(args: string[], env: Record<string, string>, input = ''): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(bin, args, { cwd: repo, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env }, timeout: 120_000 })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.stdin.end(input)
    child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }))
  })
}

/** A codebox server in its own process (it reads the model settings from its environment at start). */
async function serve(env: Record<string, string>): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', serveChild], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start in 60 s: ${out}`)), 60_000)
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /listening (\S+)/.exec(out)
      if (m) (clearTimeout(timer), resolve(m[1]!))
    })
    proc.on('exit', (code) => (clearTimeout(timer), reject(new Error(`the server exited ${code}: ${out}`))))
  })
  return { proc, url }
}

async function stop(proc: ChildProcess | undefined): Promise<void> {
  if (!proc || proc.exitCode !== null) return
  const exited = new Promise((r) => proc.once('exit', r))
  proc.kill('SIGTERM')
  const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000)
  await exited
  clearTimeout(timer)
}

/** The code the scripted model runs for a prompt; each prints `RESULT <value>`, which the answer quotes. */
function codeFor(prompt: string): string {
  if (/leap years/.test(prompt)) return 'import calendar\nprint("RESULT", sum(calendar.isleap(y) for y in range(2000, 2025)))'
  if (/remember/.test(prompt)) return 'x = 41\nprint("RESULT", "stored")'
  if (/x \+ 1/.test(prompt)) return 'print("RESULT", x + 1)'
  if (/sleep/.test(prompt)) return 'import time\nprint("RESULT", "sleeping", flush=True)\ntime.sleep(60)\nprint("RESULT", "woke")'
  if (/environment/.test(prompt)) return 'import os\nprint("RESULT", len(os.environ))\nfor k, v in sorted(os.environ.items()):\n    print(f"{k}={v}")'
  if (/chart/.test(prompt)) return 'import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.show()\nprint("RESULT", "plotted")'
  return 'print("RESULT", "unknown prompt")'
}

/**
 * The scripted model: a request without tools is the generate role (one fenced block); a request
 * whose last message is the user's prompt gets an execute_code call; one whose last message holds
 * a tool result gets an answer quoting the `RESULT` the code printed.
 */
function script(req: ModelRequestView): ScriptedReply {
  const raw = req.raw as { tools?: unknown[]; messages: { content: string | { type: string }[] }[] }
  if (!raw.tools?.length) return { text: 'Here it is:\n```python\nprint(sum(range(10)))\n```\nIt prints 45.' }
  const last = raw.messages.at(-1)?.content
  const afterTool = Array.isArray(last) && last.some((b) => b.type === 'tool_result')
  if (!afterTool)
    return { toolUse: { name: 'execute_code', input: { code: codeFor(req.userTexts.at(-1) ?? ''), language: 'python' } }, text: 'Let me compute that.' }
  const result = /RESULT (\S+)/.exec(req.toolResults.at(-1) ?? '')?.[1] ?? 'nothing'
  return { text: `The answer is ${result}.` }
}

/** `codebox agent` on a pseudo-terminal (util-linux `script`), which passes our bytes to it as keystrokes. */
function terminal(env: Record<string, string>): {
  child: ChildProcess & { stdin: NodeJS.WritableStream }
  exited: Promise<number | null>
  screen: () => string
  waitFor: (re: RegExp, what: string) => Promise<void>
} {
  const child = spawn('script', ['-qfec', `${bin} agent`, '/dev/null'], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
  let screen = ''
  // Without the terminal's cursor codes, so the text can be matched.
  child.stdout.on('data', (c: Buffer) => (screen += c.toString().replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')))
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve))
  const waitFor = async (re: RegExp, what: string): Promise<void> => {
    for (const start = Date.now(); !re.test(screen); await sleep(50))
      if (Date.now() - start > 60_000) assert.fail(`timed out waiting for ${what}; the terminal shows:\n${screen}`)
  }
  return { child, exited, screen: () => screen, waitFor }
}

describe('codebox agent and codebox invoke', () => {
  let work: string
  let models: ModelServer | undefined
  let server: ChildProcess | undefined
  let bare: ChildProcess | undefined
  /** The CLI's environment for the server with a model, and for the one without. */
  const env: Record<string, string> = {}
  const noModelEnv: Record<string, string> = {}

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'codebox-cli-agent-'))
    const driver = (await bwrapUnavailable()) === undefined ? 'bwrap' : 'fake'
    const stateDir = path.join(work, 'state')
    await mkdir(stateDir)
    if (driver === 'bwrap') await symlink(path.join(process.env.CODEBOX_STATE_DIR ?? '/var/lib/codebox', 'images'), path.join(stateDir, 'images'))
    models = await startModelServer('anthropic', script)
    const withModel = await serve({
      CODEBOX_STATE_DIR: stateDir,
      CODEBOX_DRIVER: driver,
      CODEBOX_POOL_SIZE: '1',
      CODEBOX_AGENT_MODELS: `anthropic:${model}`,
      ...modelEnv('anthropic', models),
    })
    server = withModel.proc
    const noModelDir = path.join(work, 'bare')
    await mkdir(noModelDir)
    const without = await serve({ CODEBOX_STATE_DIR: noModelDir, CODEBOX_DRIVER: 'fake', CODEBOX_POOL_SIZE: '0', CODEBOX_AGENT_MODELS: '' })
    bare = without.proc
    Object.assign(env, { CODEBOX_URL: withModel.url, CODEBOX_API_KEY: '' })
    Object.assign(noModelEnv, { CODEBOX_URL: without.url, CODEBOX_API_KEY: '' })
  })
  after(async () => {
    await Promise.all([stop(server), stop(bare)])
    await models?.close()
    await rm(work, { recursive: true, force: true })
  })

  test('one prompt: the tool call with its code and output, the answer from it, the model and the conversation id', async () => {
    const r = await codebox(['agent', 'how many leap years between 2000 and 2024?'], env)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /Let me compute that\./)
    assert.match(r.stdout, /--- execute_code \(python\) ---\nimport calendar\nprint\("RESULT", sum\(calendar\.isleap/)
    assert.match(r.stdout, /--- output ---\nRESULT 7\n--- done, exit code 0 ---/)
    assert.match(r.stdout, /The answer is 7\.\n$/)
    assert.match(r.stderr, new RegExp(`\\[answered by anthropic:${model}; \\d+ in / \\d+ out tokens\\]`))
    assert.match(r.stderr, /^conversation \S{33,}\s+\(continue: codebox agent --session \S+ "\.\.\."\)$/m)
  })

  test('the model key never reaches the sandbox: the code session’s environment has no provider variable', async () => {
    // The server runs with ANTHROPIC_API_KEY = fakeKeys.anthropic in its environment (modelEnv above).
    const r = await codebox(['agent', 'print the environment'], env)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^PATH=/m, 'the cell printed its environment')
    assert.doesNotMatch(r.stdout, /ANTHROPIC|OPENAI|AWS_|CODEBOX_AGENT/)
    assert.ok(!r.stdout.includes(fakeKeys.anthropic) && !r.stderr.includes(fakeKeys.anthropic))
  })

  test('--session continues the conversation: the same code session (x survives) and the earlier turn in the model’s context', async () => {
    const first = await codebox(['agent', 'remember x = 41'], env)
    assert.equal(first.code, 0, first.stderr)
    const id = /^conversation (\S+)/m.exec(first.stderr)![1]!
    const second = await codebox(['agent', '--session', id, 'what is x + 1?'], env)
    assert.equal(second.code, 0, second.stderr)
    assert.match(second.stdout, /RESULT 42/)
    assert.match(second.stdout, /The answer is 42\./)
    assert.match(second.stderr, new RegExp(`^conversation ${id}\\s`, 'm'))
    const request = models!.requests.findLast((q) => q.userTexts.at(-1) === 'what is x + 1?')!
    assert.ok(request.userTexts.includes('remember x = 41'), `the earlier prompt is restored into the model's context: ${JSON.stringify(request.userTexts)}`)
  })

  test('--json prints every event as one JSON line, ending with final', async () => {
    const r = await codebox(['agent', '--json', 'how many leap years between 2000 and 2024?'], env)
    assert.equal(r.code, 0, r.stderr)
    const events = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; [k: string]: unknown })
    const types = events.map((e) => e.type)
    assert.equal(types[0], 'turn_start')
    assert.equal(types.at(-1), 'final')
    for (const t of ['model', 'text', 'tool_use', 'tool_result']) assert.ok(types.includes(t), `${t} in ${types.join(',')}`)
    const use = events.find((e) => e.type === 'tool_use')!
    assert.match(String(use.code), /calendar\.isleap/)
    assert.equal(events.at(-1)!.text, 'The answer is 7.')
    assert.equal(events.at(-1)!.model, `anthropic:${model}`)
  })

  test('--save-images writes the chart the code drew and prints its size', async () => {
    const dir = path.join(work, 'charts')
    const r = await codebox(['agent', '--save-images', dir, 'draw a chart of squares'], env)
    assert.equal(r.code, 0, r.stderr)
    const m = /\[image: \d+ KB PNG saved to (\S+)\]/.exec(r.stdout)
    assert.ok(m, r.stdout)
    assert.deepEqual(await readdir(dir), [path.basename(m[1]!)])
    assert.deepEqual([...(await readFile(m[1]!)).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47])
  })

  test('--generate prints only the code on stdout', async () => {
    const r = await codebox(['agent', '--generate', '-l', 'python', 'sum the numbers 0 to 9'], env)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, 'print(sum(range(10)))\n')
    assert.match(r.stderr, /It prints 45\./)
  })

  test('no prompt and piped stdin: a chat, one turn per line, in one conversation', async () => {
    const r = await codebox(['agent'], env, 'remember x = 41\n\nwhat is x + 1?\n')
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /RESULT stored[\s\S]*The answer is stored\.[\s\S]*RESULT 42[\s\S]*The answer is 42\./)
    assert.equal([...r.stderr.matchAll(/^conversation /gm)].length, 1, r.stderr)
  })

  test('a chat on a terminal: Ctrl-C cancels the running turn (the cell stops), the next turn works, Ctrl-D or Ctrl-C at the prompt exits', async (t) => {
    if (!existsSync('/usr/bin/script')) return t.skip('needs util-linux `script` for a pseudo-terminal')
    const { child, exited, waitFor, screen } = terminal(env)
    try {
      await waitFor(/you> $/, 'the prompt')
      const started = Date.now()
      child.stdin.write('please sleep\r')
      await waitFor(/RESULT sleeping/, 'the cell to start')
      child.stdin.write('\x03')
      await waitFor(/\[turn canceled\]/, 'the cancel')
      assert.doesNotMatch(screen(), /RESULT woke/)
      await waitFor(/you> $/, 'the prompt after the cancel')
      child.stdin.write('remember x = 41\r')
      await waitFor(/The answer is stored\.[\s\S]*you> $/, 'the next answer')
      // The canceled cell sleeps 60 s; the conversation answering well before that means the turn was really stopped.
      assert.ok(Date.now() - started < 45_000, `the next turn waited for the canceled one (${Date.now() - started} ms)`)
      child.stdin.write('\x04')
      assert.equal(await exited, 0, screen())
      assert.match(screen(), /conversation \S+/)
    } finally {
      child.kill('SIGKILL')
    }
    const idle = terminal(env)
    try {
      await idle.waitFor(/you> $/, 'the prompt')
      idle.child.stdin.write('\x03')
      assert.equal(await idle.exited, 0, `Ctrl-C at the prompt exits: ${idle.screen()}`)
    } finally {
      idle.child.kill('SIGKILL')
    }
  })

  test('invoke posts a raw payload to /invocations: pretty JSON, --stream events, --session-id continues', async () => {
    const r = await codebox(['invoke', '{"prompt": "remember x = 41"}'], env)
    assert.equal(r.code, 0, r.stderr)
    const answer = JSON.parse(r.stdout) as { result: string; conversationId: string; model: string }
    assert.match(r.stdout, /^\{\n {2}"result": "The answer is stored\."/)
    assert.equal(answer.model, `anthropic:${model}`)
    assert.match(r.stderr, new RegExp(`^session ${answer.conversationId}$`, 'm'))
    const s = await codebox(['invoke', '--stream', '--session-id', answer.conversationId, '--user-id', 'alice', '{"input": {"prompt": "what is x + 1?"}}'], env)
    assert.equal(s.code, 0, s.stderr)
    const events = s.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; text?: string; conversationId?: string })
    assert.equal(events.at(-1)!.type, 'final')
    assert.equal(events.at(-1)!.text, 'The answer is 42.')
    assert.match(s.stderr, new RegExp(`^session ${answer.conversationId}$`, 'm'))
  })

  test('no model configured: the server’s message says what to set, exit 69, no stack trace', async () => {
    for (const args of [
      ['agent', 'how many leap years?'],
      ['agent', '--json', 'hi'],
      ['invoke', '{"prompt": "hi"}'],
    ]) {
      const r = await codebox(args, noModelEnv)
      assert.equal(r.code, 69, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, /^codebox: ModelNotConfigured: .*CODEBOX_AGENT_MODELS/m)
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace')
    }
    const chat = await codebox(['agent'], noModelEnv, 'hi\nagain\n')
    assert.equal(chat.code, 69, chat.stderr)
    assert.equal([...chat.stderr.matchAll(/ModelNotConfigured/g)].length, 1, 'the chat stops at the first turn')
  })

  test('--model picks a model of the chain (an unknown one names the configured); --code-session works in your own session', async () => {
    const chosen = await codebox(['agent', '--model', `anthropic:${model}`, 'how many leap years between 2000 and 2024?'], env)
    assert.equal(chosen.code, 0, chosen.stderr)
    assert.match(chosen.stdout, /The answer is 7\./)
    const unknown = await codebox(['agent', '-m', 'openai:gpt-9', 'hi'], env)
    assert.equal(unknown.code, 64)
    assert.match(unknown.stderr, new RegExp(`model: must be one of the configured models \\(anthropic:${model}\\), got "openai:gpt-9"`))
    const started = await codebox(['sessions', 'start'], env)
    assert.equal(started.code, 0, started.stderr)
    const sessionId = started.stdout.trim()
    assert.equal((await codebox(['exec', '--session', sessionId, 'x = 99'], env)).code, 0)
    const mine = await codebox(['agent', '--code-session', sessionId, 'what is x + 1?'], env)
    assert.equal(mine.code, 0, mine.stderr)
    assert.match(mine.stdout, /RESULT 100/)
    const wrong = await codebox(['agent', '--generate', '--code-session', sessionId, 'x'], env)
    assert.equal(wrong.code, 64)
    assert.match(wrong.stderr, /--code-session: does not go with --generate/)
    assert.equal((await codebox(['sessions', 'stop', sessionId], env)).code, 0)
  })

  test('bad usage names the problem and exits 64', async () => {
    const lang = await codebox(['agent', '--generate', '-l', 'cobol', 'x'], env)
    assert.equal(lang.code, 64)
    assert.match(lang.stderr, /--language: must be one of python, javascript, typescript/)
    const notJson = await codebox(['invoke', '{prompt: hi}'], env)
    assert.equal(notJson.code, 64)
    assert.match(notJson.stderr, /payload: is not JSON/)
    const help = await codebox(['agent', '--help'], env)
    assert.equal(help.code, 0)
    assert.match(help.stdout, /Examples:\n {2}codebox agent "how many leap years/)
  })
})
