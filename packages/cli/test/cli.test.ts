/**
 * The CLI end to end against a real server on the real bwrap driver, including every
 * `npx codebox` example and every TypeScript example of the README, run as a user would.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { BedrockAgentCoreClient, StartCodeInterpreterSessionCommand } from '@aws-sdk/client-bedrock-agentcore'
import type { RunningServer } from '@codebox/server'
import { realServer } from '../../server/test/fixtures.ts'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'

const repo = fileURLToPath(new URL('../../../', import.meta.url))
const bin = path.join(repo, 'packages/cli/bin/codebox')

/** Where the test server keeps its state, and how CLI processes reach it. */
const env: Record<string, string> = {}

function codebox(
  args: string[],
  options: { input?: string; cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(bin, args, { cwd: options.cwd ?? repo, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env, ...options.env } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.stdin.end(options.input ?? '')
    child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }))
  })
}

/** The shell-quoted arguments of a README line like `npx codebox exec -l python '...'   # comment`. */
function shellWords(line: string): string[] {
  const words: string[] = []
  const re = /'([^']*)'|"((?:[^"\\]|\\.)*)"|(#.*$)|(\S+)/g
  for (const m of line.matchAll(re)) {
    if (m[3] !== undefined) break
    words.push(m[1] ?? m[2] ?? m[4]!)
  }
  return words
}

describe('codebox CLI', () => {
  let skip: string | undefined
  let work: string
  let server: RunningServer | undefined
  before(async () => {
    skip = await bwrapUnavailable()
    work = await mkdtemp(path.join(tmpdir(), 'codebox-cli-test-'))
    if (skip) return
    // A server of its own: a fresh store in a temporary state dir, the shared image.
    server = await realServer(work)
    Object.assign(env, { CODEBOX_STATE_DIR: path.join(work, 'state'), CODEBOX_LOG_LEVEL: 'silent', CODEBOX_URL: server.url })
  })
  after(async () => {
    await server?.close()
    await rm(work, { recursive: true, force: true })
  })

  test('every `npx codebox exec` example in the README works', async (t) => {
    if (skip) return t.skip(skip)
    const readme = await readFile(path.join(repo, 'README.md'), 'utf8')
    const lines = readme.split('\n').filter((l) => l.startsWith('npx codebox exec ') && !l.includes('--session'))
    assert.ok(lines.length >= 3, 'the README shows exec examples')
    const expected = [/a\s+3/, /^42$/m, /Python 3\.11/]
    for (const [i, line] of lines.entries()) {
      const r = await codebox(shellWords(line).slice(2))
      assert.equal(r.code, 0, `${line}\n${r.stderr}`)
      assert.match(r.stdout, expected[i]!, line)
    }
  })

  test('exec: a failing program sets the exit code and prints the traceback; --json gives the result', async (t) => {
    if (skip) return t.skip(skip)
    const failed = await codebox(['exec', 'raise ValueError("boom")'])
    assert.equal(failed.code, 1)
    assert.match(failed.stderr, /ValueError: boom/)
    const cmd = await codebox(['exec', '-c', 'exit 7'])
    assert.equal(cmd.code, 7)
    const json = await codebox(['exec', '--json', 'print(6*7)'])
    const result = JSON.parse(json.stdout) as { structuredContent: { stdout: string }; isError: boolean }
    assert.equal(result.structuredContent.stdout, '42\n')
    assert.equal(result.isError, false)
  })

  test('exec: reads code from stdin and saves charts as PNG files', async (t) => {
    if (skip) return t.skip(skip)
    const code = 'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()\nprint("plotted")'
    const r = await codebox(['exec', '-f', '-', '--out-dir', work], { input: code })
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /plotted/)
    const pngs = (await readdir(work)).filter((f) => f.endsWith('.png'))
    assert.equal(pngs.length, 1)
    const bytes = await readFile(path.join(work, pngs[0]!))
    assert.deepEqual([...bytes.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47])
  })

  test('repl: cells share state, blocks span lines, .clear resets', async (t) => {
    if (skip) return t.skip(skip)
    const input = ['x = 41', 'def f(y):', '    return y + 1', '', 'f(x)', '.clear', 'x', '.exit', ''].join('\n')
    const r = await codebox(['repl', '-l', 'python'], { input })
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^42$/m)
    assert.match(r.stderr, /NameError: name 'x' is not defined/)
  })

  test('bad input: unknown language and unknown option are usage errors naming the problem', async () => {
    const lang = await codebox(['exec', '-l', 'cobol', 'x'])
    assert.equal(lang.code, 64)
    assert.match(lang.stderr, /--language: must be one of python, javascript, typescript/)
    const opt = await codebox(['exec', '--frobnicate'])
    assert.equal(opt.code, 64)
    assert.match(opt.stderr, /--frobnicate: unknown option/)
    const cmd = await codebox(['frobnicate'])
    assert.equal(cmd.code, 64)
  })

  test('image build reports the cached image with its size', async (t) => {
    if (skip) return t.skip(skip)
    const r = await codebox(['image', 'build'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /image [0-9a-f]{16}: \d+\.\d+ GiB, cached/)
  })

  test('sessions, exec --session, files, audit and stop: the workflow of the issue', async (t) => {
    if (skip) return t.skip(skip)
    const start = await codebox(['sessions', 'start', '--timeout', '900', '--name', 'cli-test'])
    assert.equal(start.code, 0, start.stderr)
    const id = start.stdout.trim()
    assert.match(id, /^[0-9a-z]{26}$/)
    assert.equal((await codebox(['exec', '--session', id, '-l', 'python', 'x = 41'])).code, 0)
    const r = await codebox(['exec', '--session', id, '-l', 'python', 'x + 1'])
    assert.equal(r.stdout, '42\n', r.stderr)
    await writeFile(path.join(work, 'data.csv'), 'a,b\n1,2\n3,4\n')
    const put = await codebox(['files', 'put', id, 'data.csv'], { cwd: work })
    assert.equal(put.code, 0, put.stderr)
    const plot =
      'import pandas as pd, matplotlib\nmatplotlib.use("Agg")\nimport matplotlib.pyplot as plt\ndf = pd.read_csv("data.csv")\ndf.plot()\nplt.savefig("out.png")\nprint(df.sum().to_dict())'
    const ran = await codebox(['exec', '--session', id, plot])
    assert.match(ran.stdout, /\{'a': 4, 'b': 6\}/, ran.stderr)
    const get = await codebox(['files', 'get', id, 'out.png'], { cwd: work })
    assert.equal(get.code, 0, get.stderr)
    assert.deepEqual([...(await readFile(path.join(work, 'out.png'))).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47])
    const ls = await codebox(['files', 'ls', id, '--json'])
    assert.deepEqual((JSON.parse(ls.stdout) as { path: string }[]).map((e) => e.path).sort(), ['data.csv', 'out.png'])
    assert.equal((await codebox(['files', 'rm', id, 'out.png'])).code, 0)
    const sessions = await codebox(['sessions', 'ls'])
    assert.match(sessions.stdout, new RegExp(`${id}\\s+READY\\s+cli-test`))
    const audit = await codebox(['audit', '--session', id, '--json'])
    const actions = (JSON.parse(audit.stdout) as { action: string; outcome: string }[]).map((e) => `${e.action}:${e.outcome}`)
    assert.deepEqual(actions, ['startSession:ok', 'executeCode:ok', 'executeCode:ok', 'uploadFile:ok', 'executeCode:ok', 'downloadFile:ok'])
    const human = await codebox(['audit', '--session', id])
    assert.match(human.stdout, /TIME\s+SESSION\s+KEY\s+ACTION/)
    const moved = await codebox(['sessions', 'deadline', id, '--in', '600'])
    assert.match(moved.stdout, new RegExp(`^${id} ends at (\\S+)\n$`), moved.stderr)
    const endsAt = Date.parse(/ends at (\S+)/.exec(moved.stdout)![1]!)
    assert.ok(Math.abs(endsAt - (Date.now() + 600_000)) < 10_000, 'ten minutes from now')
    const notSeconds = await codebox(['sessions', 'deadline', id, '--in', 'soon'])
    assert.equal(notSeconds.code, 64)
    assert.match(notSeconds.stderr, /--in: must be whole seconds from now/)
    assert.equal((await codebox(['sessions', 'stop', id])).stdout, `stopped ${id}\n`)
    const after = await codebox(['exec', '--session', id, 'print(1)'])
    assert.equal(after.code, 66)
    assert.match(after.stderr, /SessionTerminated: .*has ended \(stopped\)/)
    const got = await codebox(['sessions', 'get', id, '--json'])
    assert.equal((JSON.parse(got.stdout) as { endReason: string }).endReason, 'stopped')
  })

  test('interpreters: create one with its limits, start a session from it, remove it', async (t) => {
    if (skip) return t.skip(skip)
    const created = await codebox(['interpreters', 'create', 'small', '--memory', '256', '--call-timeout', '2'])
    assert.equal(created.code, 0, created.stderr)
    const iid = created.stdout.trim()
    assert.match((await codebox(['interpreters', 'ls'])).stdout, new RegExp(`${iid}\\s+CUSTOM\\s+READY\\s+256 MiB`))
    const id = (await codebox(['sessions', 'start', '--interpreter', iid])).stdout.trim()
    const slow = await codebox(['exec', '--session', id, '-c', 'sleep 10'])
    assert.notEqual(slow.code, 0)
    assert.match(slow.stderr, /TIMEOUT|timed out|time limit/i)
    await codebox(['sessions', 'stop', id])
    assert.equal((await codebox(['interpreters', 'rm', iid])).code, 0)
    const noList = await codebox(['interpreters', 'create', 'fetcher', '--network', 'VPC'])
    assert.notEqual(noList.code, 0)
    assert.match(noList.stderr, /VPC mode needs an egress allow-list/)
    const badEntry = await codebox(['interpreters', 'create', 'fetcher', '--network', 'VPC', '--allow', 'http://x/'])
    assert.notEqual(badEntry.code, 0)
    assert.match(badEntry.stderr, /allow-list entry 1/)
    const vpc = await codebox(['interpreters', 'create', 'fetcher', '--network', 'vpc', '--allow', 'example.com,*.example.org:443'])
    assert.equal(vpc.code, 0, vpc.stderr)
    assert.match((await codebox(['interpreters', 'ls'])).stdout, /VPC \(example\.com \*\.example\.org:443\)/)
    const badPreload = await codebox(['interpreters', 'create', 'science', '--preload', 'numpy,scipy-stats'])
    assert.notEqual(badPreload.code, 0)
    assert.match(badPreload.stderr, /--preload\[1\]: "scipy-stats" is not a Python module name/)
    const lean = await codebox(['interpreters', 'create', 'lean', '--preload', 'none', '--json'])
    assert.equal(lean.code, 0, lean.stderr)
    assert.deepEqual((JSON.parse(lean.stdout) as { preload: string[] }).preload, [])
    const science = await codebox(['interpreters', 'create', 'science', '--preload', 'numpy, fractions'])
    assert.equal(science.code, 0, science.stderr)
    assert.match((await codebox(['interpreters', 'ls'])).stdout, new RegExp(`${science.stdout.trim()}\\s+CUSTOM.*numpy,fractions`))
    const scienceSession = (await codebox(['sessions', 'start', '--interpreter', science.stdout.trim()])).stdout.trim()
    const imported = await codebox(['exec', '--session', scienceSession, 'import sys; print("fractions" in sys.modules)'])
    assert.equal(imported.stdout, 'True\n', imported.stderr)
    await codebox(['sessions', 'stop', scienceSession])
    // The built-in interpreter preloads the server's default (numpy, pandas, matplotlib.pyplot) without names in the cell namespace.
    const builtIn = (await codebox(['sessions', 'start'])).stdout.trim()
    const probe = 'import sys; print(all(m in sys.modules for m in ("numpy", "pandas", "matplotlib.pyplot")), "pd" in dir(), "plt" in dir())'
    const preloaded = await codebox(['exec', '--session', builtIn, probe])
    assert.equal(preloaded.stdout, 'True False False\n', preloaded.stderr)
    const leanSession = (
      await codebox(['sessions', 'start', '--interpreter', (JSON.parse(lean.stdout) as { interpreterId: string }).interpreterId])
    ).stdout.trim()
    assert.equal((await codebox(['exec', '--session', leanSession, 'import sys; print("pandas" in sys.modules)'])).stdout, 'False\n')
    for (const id of [builtIn, leanSession]) await codebox(['sessions', 'stop', id])
  })

  test('every TypeScript example of the README runs against the server', async (t) => {
    if (skip) return t.skip(skip)
    const readme = await readFile(path.join(repo, 'README.md'), 'utf8')
    const examples = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!)
    assert.ok(examples.length >= 1, 'the README has TypeScript examples')
    for (const [i, example] of examples.entries()) {
      const file = path.join(repo, 'packages/cli/test', `readme-example-${process.pid}-${i}.ts`)
      await writeFile(file, example)
      try {
        const r = await new Promise<{ code: number; out: string }>((resolve) => {
          const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', file], {
            cwd: repo,
            stdio: ['ignore', 'pipe', 'pipe'],
            env: { ...process.env, ...env },
          })
          let out = ''
          child.stdout.on('data', (c: Buffer) => (out += c.toString()))
          child.stderr.on('data', (c: Buffer) => (out += c.toString()))
          child.on('exit', (code) => resolve({ code: code ?? -1, out }))
        })
        assert.equal(r.code, 0, `README example ${i + 1}:\n${example}\n${r.out}`)
        assert.match(r.out, /\S/, `README example ${i + 1} printed nothing`)
      } finally {
        await unlink(file)
      }
    }
  })

  test('a server that is not running is a clear error with exit code 69', async () => {
    const r = await codebox(['sessions', 'ls'], { env: { CODEBOX_URL: 'http://127.0.0.1:9' } })
    assert.equal(r.code, 69)
    assert.match(r.stderr, /could not reach codebox at http:\/\/127\.0\.0\.1:9/)
  })

  // Last: once a key exists the server requires keys from everyone.
  test('keys: created once for a tenant, required from then on, revocable; tenants get quotas', async (t) => {
    if (skip) return t.skip(skip)
    const created = await codebox(['keys', 'create', '--tenant', 'acme', '--json'])
    assert.equal(created.code, 0, created.stderr)
    const { key, keyId } = JSON.parse(created.stdout) as { key: string; keyId: string }
    assert.match(key, /^cbx_[0-9A-Za-z]{40}$/)
    const denied = await codebox(['sessions', 'ls'])
    assert.equal(denied.code, 77)
    assert.match(denied.stderr, /Unauthorized: missing API key/)
    const withKey = { CODEBOX_API_KEY: key }
    const id = (await codebox(['sessions', 'start'], { env: withKey })).stdout.trim()
    assert.equal((await codebox(['exec', '--session', id, 'print("acme")'], { env: withKey })).stdout, 'acme\n')
    const audit = JSON.parse((await codebox(['audit', '--json'], { env: withKey })).stdout) as { keyId: string; tenant: string }[]
    assert.ok(audit.length >= 2 && audit.every((e) => e.tenant === 'acme' && e.keyId === keyId))
    const listed = await codebox(['keys', 'ls'])
    assert.match(listed.stdout, new RegExp(`${keyId}\\s+api\\s+acme\\s+cbx_`))
    assert.doesNotMatch(listed.stdout, new RegExp(key), 'the key is never shown again')
    assert.equal((await codebox(['tenants', 'set', 'acme', '--max-sessions', '1'])).code, 0)
    const over = await codebox(['sessions', 'start'], { env: withKey })
    assert.equal(over.code, 75)
    assert.match(over.stderr, /QuotaExceeded/)
    assert.equal((await codebox(['keys', 'revoke', keyId])).code, 0)
    assert.equal((await codebox(['sessions', 'ls'], { env: withKey })).code, 77)

    // An access-key pair for the AWS SDKs, in the environment-variable form it prints.
    const aws = await codebox(['keys', 'create', '--tenant', 'agents', '--aws'])
    assert.equal(aws.code, 0, aws.stderr)
    const vars = Object.fromEntries(
      aws.stdout
        .trim()
        .split('\n')
        .map((l) => l.split('=') as [string, string]),
    )
    assert.match(vars.AWS_ACCESS_KEY_ID!, /^CBXA[A-Z2-7]{16}$/)
    const sdk = new BedrockAgentCoreClient({
      endpoint: server!.url,
      region: 'us-east-1',
      credentials: { accessKeyId: vars.AWS_ACCESS_KEY_ID!, secretAccessKey: vars.AWS_SECRET_ACCESS_KEY! },
    })
    const started = await sdk.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: 'aws.codeinterpreter.v1' }))
    assert.match(started.sessionId!, /^[0-9a-z]{26}$/)
    assert.match((await codebox(['keys', 'ls'])).stdout, new RegExp(`${vars.AWS_ACCESS_KEY_ID}\\s+aws\\s+agents`))
    assert.equal((await codebox(['keys', 'revoke', vars.AWS_ACCESS_KEY_ID!])).code, 0)
    await assert.rejects(sdk.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: 'aws.codeinterpreter.v1' })), {
      name: 'AccessDeniedException',
    })
  })
})
