/**
 * Hosted agents on a server whose driver is gVisor (CODEBOX_DRIVER=gvisor): a stdlib-only Python
 * agent deployed as a runtime and invoked through the AWS SDK's InvokeAgentRuntimeCommand reaches
 * its sandbox's port 8080 through the gVisor driver's inbound relay (a host socket in the
 * sandbox's ports tmpfs). Each runtime session has its own sandbox and process, one keeps its
 * state, an SSE answer streams through, and StopRuntimeSessionCommand ends a session. Skipped, with
 * the reason, where runsc cannot run or the image has no /app to mount the code on.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { InvokeAgentRuntimeCommand, StopRuntimeSessionCommand } from '@aws-sdk/client-bedrock-agentcore'
import { gvisorCodeUnavailable } from '../../sandbox/test/gvisor-fixtures.ts'
import { agentCore, deployAgent, hostedServer, pythonAgent } from './hosted-fixtures.ts'

/** Counts its invocations and says whether its kernel is gVisor's; `stream` streams. */
const agentPy = pythonAgent(String.raw`    def do_POST(self):
        global count
        payload = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        count += 1
        if payload.get("prompt") == "stream":
            return self.stream_parts()
        kernel_log = os.popen("dmesg 2>/dev/null").read()
        self.reply(200, "application/json", json.dumps({"count": count, "pid": os.getpid(), "cwd": os.getcwd(), "gvisor": "gVisor" in kernel_log}).encode())`)

const hosted = hostedServer({ name: 'hosted-gvisor', unavailable: gvisorCodeUnavailable, env: () => ({ CODEBOX_DRIVER: 'gvisor' }) })

const sid = (c: string): string => `${c.repeat(8)}-session-for-the-gvisor-hosted-test`

test('a deployed Python agent on gVisor through InvokeAgentRuntime: a sandbox per runtime session, state kept, SSE, stop', async (t) => {
  if (hosted.skip) return t.skip(hosted.skip)
  const server = hosted.server
  const { agentRuntimeArn } = await deployAgent(server, 'counter', agentPy)
  const { aws, invoke } = agentCore(server, agentRuntimeArn)

  const a1 = await invoke(sid('a'), 'first')
  assert.deepEqual([a1.count, a1.cwd, a1.gvisor], [1, '/app', true])
  const a2 = await invoke(sid('a'), 'again')
  assert.deepEqual([a2.count, a2.pid], [2, a1.pid], 'the same process, with its memory')
  assert.equal((await invoke(sid('b'), 'another session')).count, 1, 'another runtime session has its own agent')

  const streamed = await aws.send(
    new InvokeAgentRuntimeCommand({ agentRuntimeArn, runtimeSessionId: sid('b'), payload: JSON.stringify({ prompt: 'stream' }), accept: 'text/event-stream' }),
  )
  assert.equal(streamed.contentType, 'text/event-stream')
  assert.equal(await streamed.response!.transformToString(), 'data: {"part": 0}\n\ndata: {"part": 1}\n\ndata: {"part": 2}\n\n')

  await aws.send(new StopRuntimeSessionCommand({ agentRuntimeArn, runtimeSessionId: sid('a') }))
  assert.equal((await invoke(sid('a'), 'after the stop')).count, 1, 'a stopped session starts afresh')
})
