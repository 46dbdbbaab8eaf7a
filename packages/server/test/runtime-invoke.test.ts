/**
 * The native door to hosted agents on a real server (bwrap), and their logs in the store: a
 * stdlib-only Python agent invoked with POST /v1/runtimes/{id}/invocations through the SDK
 * (`client.runtimes.invoke`) and the CLI (`codebox runtimes invoke`): the payload byte for byte, a
 * runtime session keeping its process, SSE streamed, a qualifier, the agent's crash and its 5xx as
 * codebox errors with what it printed. Then the server stops, a new one opens the same store, and
 * the logs of the sessions that ended before are read through the API and the CLI.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { CodeboxClient, SandboxFailureError, ValidationError } from '@codebox/sdk'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'
import { codebox, deployAgent, hostedServer, pythonAgent } from './hosted-fixtures.ts'

/** Echoes the payload's bytes and headers, counts per process, streams SSE, crashes, answers 500. */
const agentPy = pythonAgent(String.raw`    def do_POST(self):
        global count
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        text = raw.decode("utf-8", "replace")
        if text == "crash":
            print("about to crash on purpose", flush=True)
            os._exit(3)
        if text == "fail":
            print("the model is down", file=sys.stderr, flush=True)
            self.reply(500, "text/plain", b"internal trouble")
            return
        if text == "stream":
            return self.stream_parts()
        count += 1
        answer = {"count": count, "pid": os.getpid(), "b64": base64.b64encode(raw).decode(), "type": self.headers.get("content-type"),
                  "session": self.headers.get("x-amzn-bedrock-agentcore-runtime-session-id"), "version": os.environ["AGENTCORE_RUNTIME_VERSION"]}
        print("answered", count, flush=True)
        self.reply(200, "application/json", json.dumps(answer).encode())`)

const hosted = hostedServer({ name: 'invoke', unavailable: bwrapUnavailable })

/** The shell-quoted arguments of a README line like `npx codebox runtimes invoke NAME '...'   # comment`. */
function shellWords(line: string): string[] {
  const words: string[] = []
  for (const m of line.matchAll(/'([^']*)'|"((?:[^"\\]|\\.)*)"|(#.*$)|(\S+)/g)) {
    if (m[3] !== undefined) break
    words.push(m[1] ?? m[2] ?? m[4]!)
  }
  return words
}

const sid = (c: string): string => `${c.repeat(8)}-session-for-the-native-invoke-test`

test('a hosted agent through POST /v1/runtimes/{id}/invocations (SDK and CLI), and its logs read from the store after a restart', async (t) => {
  if (hosted.skip) return t.skip(hosted.skip)
  let server = hosted.server
  const sdk = new CodeboxClient({ baseUrl: server.url })
  // Named as in the README, whose invoke example runs below.
  const id = (await deployAgent(server, 'my_agent', agentPy)).agentRuntimeId

  // The payload reaches the agent byte for byte (not valid UTF-8 here), with its content type.
  const bytes = Uint8Array.from([0xff, 0x00, 0x7b, 0xc3, 0x28, 0x0a])
  const first = await sdk.runtimes.invoke('my_agent', bytes, { session: sid('a'), contentType: 'application/octet-stream' })
  assert.equal(first.runtimeSessionId, sid('a'))
  assert.equal(first.streaming, false)
  const a1 = (await first.json()) as Record<string, unknown>
  assert.equal(Buffer.from(a1.b64 as string, 'base64').toString('hex'), 'ff007bc3280a')
  assert.equal(a1.type, 'application/octet-stream')
  assert.equal(a1.session, sid('a'))
  // The session as a query parameter reaches the same process and its memory.
  const viaQuery = await fetch(`${server.url}/v1/runtimes/${id}/invocations?session=${sid('a')}`, { method: 'POST', body: '{"prompt": "again"}' })
  assert.equal(viaQuery.status, 200)
  assert.equal(viaQuery.headers.get('x-amzn-bedrock-agentcore-runtime-session-id'), sid('a'))
  const a2 = (await viaQuery.json()) as Record<string, unknown>
  assert.deepEqual([a2.count, a2.pid], [2, a1.pid])
  // Without a session, a new one: its id comes back.
  const fresh = await sdk.runtimes.invoke(id, { prompt: 'hello' })
  assert.match(fresh.runtimeSessionId, /^[0-9a-zA-Z_.:-]{33,256}$/)
  assert.equal(((await fresh.json()) as { count: number }).count, 1)

  // SSE streams through, event by event.
  const streamed = await sdk.runtimes.invoke('my_agent', 'stream', { session: sid('a') })
  assert.equal(streamed.streaming, true)
  const parts: string[] = []
  for await (const e of streamed.events()) parts.push(e.data)
  assert.deepEqual(parts, ['{"part": 0}', '{"part": 1}', '{"part": 2}'])

  // A qualifier names a version; an unknown one is NotFound; a bad session id is a ValidationError.
  assert.equal(((await (await sdk.runtimes.invoke(id, {}, { session: sid('q'), qualifier: '1' })).json()) as { version: string }).version, '1')
  await assert.rejects(sdk.runtimes.invoke(id, {}, { qualifier: '7' }), { code: 'NotFound' })
  await assert.rejects(sdk.runtimes.invoke(id, {}, { session: 'short' }), (e: unknown) => e instanceof ValidationError)
  await assert.rejects(sdk.runtimes.invoke('codebox-agent', {}), (e: unknown) => e instanceof ValidationError)

  // The agent's failures are codebox errors that end with what it printed.
  await assert.rejects(sdk.runtimes.invoke(id, 'fail', { session: sid('f') }), (e: unknown) => {
    assert.ok(e instanceof SandboxFailureError, String(e))
    assert.match(e.message, /answered 500: internal trouble/)
    assert.match(e.message, /the model is down/)
    return true
  })
  await assert.rejects(sdk.runtimes.invoke(id, 'crash', { session: sid('c') }), (e: unknown) => {
    assert.ok(e instanceof SandboxFailureError, String(e))
    assert.match(e.message, /about to crash on purpose/)
    return true
  })

  // The CLI: a JSON answer as it came, an SSE answer line by line, the runtime session on stderr.
  const cli = await codebox(['runtimes', 'invoke', 'my_agent', '{"prompt": "from the cli"}', '--session', sid('a')], server.url)
  assert.equal(cli.code, 0, cli.stderr)
  assert.equal((JSON.parse(cli.stdout) as { count: number }).count, 3)
  assert.match(cli.stderr, new RegExp(`runtime session ${sid('a')}`))
  const cliStream = await codebox(['runtimes', 'invoke', 'my_agent', 'stream', '--session', sid('a')], server.url)
  assert.equal(cliStream.code, 0, cliStream.stderr)
  assert.equal(cliStream.stdout, '{"part": 0}\n{"part": 1}\n{"part": 2}\n')
  const fromStdin = await codebox(['runtimes', 'invoke', 'my_agent', '-', '--session', sid('s')], server.url, 'payload\nfrom stdin')
  assert.equal(fromStdin.code, 0, fromStdin.stderr)
  assert.equal(Buffer.from((JSON.parse(fromStdin.stdout) as { b64: string }).b64, 'base64').toString(), 'payload\nfrom stdin')
  const cliJson = await codebox(['runtimes', 'invoke', 'my_agent', 'hi', '--session', sid('a'), '--json'], server.url)
  assert.equal(cliJson.code, 0, cliJson.stderr)
  const parsed = JSON.parse(cliJson.stdout) as { runtimeSessionId: string; response: { count: number } }
  assert.deepEqual([parsed.runtimeSessionId, parsed.response.count], [sid('a'), 4])
  // The README's example, as a user would run it.
  const readme = fs.readFileSync(path.join(import.meta.dirname, '../../../README.md'), 'utf8')
  const line = readme.split('\n').find((l) => l.startsWith('npx codebox runtimes invoke '))
  assert.ok(line, 'the README shows codebox runtimes invoke')
  const example = await codebox(shellWords(line).slice(2), server.url)
  assert.equal(example.code, 0, `${line}\n${example.stderr}`)
  const echoed = JSON.parse(example.stdout) as { b64: string; count: number }
  assert.equal(Buffer.from(echoed.b64, 'base64').toString(), '{"prompt": "What is 2**10?"}', 'the payload as the README wrote it')
  assert.equal(echoed.count, 1, 'a new runtime session')
  assert.match(example.stderr, /^runtime session [0-9a-zA-Z_.:-]{33,256}$/m)
  const cliCrash = await codebox(['runtimes', 'invoke', 'my_agent', 'crash', '--session', sid('d')], server.url)
  assert.notEqual(cliCrash.code, 0)
  assert.match(cliCrash.stderr, /about to crash on purpose/)

  // The server stops (its running sessions end); a new one on the same store reads every log.
  server = await hosted.restart()
  const again = new CodeboxClient({ baseUrl: server.url })
  const crashed = await again.runtimes.logs('my_agent', sid('c'))
  assert.equal(crashed.items.length, 1)
  assert.equal(crashed.items[0]!.text, 'agent listening on 8080\nabout to crash on purpose\n')
  assert.match(crashed.items[0]!.ended ?? '', /exited with code 3/)
  const running = await again.runtimes.logs('my_agent', sid('a'))
  assert.equal(running.items.length, 1)
  assert.equal(running.items[0]!.text, 'agent listening on 8080\nanswered 1\nanswered 2\nanswered 3\nanswered 4\n')
  assert.match(running.items[0]!.ended ?? '', /server-shutdown/, 'the session ended with the server that ran it')
  const all = await again.runtimes.logs(id)
  assert.ok(all.items.length >= 5, `logs of every runtime session: ${all.items.map((e) => e.runtimeSessionId).join(', ')}`)
  const cliLogs = await codebox(['runtimes', 'logs', 'my_agent', '--session', sid('f')], server.url)
  assert.equal(cliLogs.code, 0, cliLogs.stderr)
  assert.match(cliLogs.stdout, /agent listening on 8080\nthe model is down\n/)
})
