/**
 * One turn's edges: a model's mistakes in calling tools come back as error results it can fix
 * (the loop goes on); a failure it cannot fix ends the turn; limits (model calls, tokens, wall
 * time) and the caller's cancellation end it with an error event, and stop the running tool call.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { CodeboxError, type AgentEvent } from '@codebox/core'
import { createAgent } from '../src/agent.ts'
import { agentOptionsFromEnv, type AgentLimits } from '../src/index.ts'
import { cellResult, FakeTarget, untilAborted, type Handler } from './fake-target.ts'
import { drain, modelServer, shape } from './helpers.ts'
import { modelEnv, type ModelRequestView, type ScriptedReply } from './model-servers.ts'
import type { TestContext } from 'node:test'

const ask = { prompt: 'Compute something.', history: [] }

/** An agent over one scripted Anthropic server. */
async function setup(t: TestContext, script: ScriptedReply[] | ((req: ModelRequestView, i: number) => ScriptedReply), limits: Partial<AgentLimits> = {}) {
  const server = await modelServer(t, 'anthropic', script)
  const agent = createAgent({ ...agentOptionsFromEnv({ ...modelEnv('anthropic', server), CODEBOX_AGENT_MODELS: 'anthropic:claude-x' }), limits })
  return { server, agent }
}

const results = (events: AgentEvent[]) => events.filter((e): e is Extract<AgentEvent, { type: 'tool_result' }> => e.type === 'tool_result')

describe('tool call mistakes come back to the model', () => {
  test('bad arguments, an unknown tool and arguments that are not JSON: error results, and the loop goes on', async (t) => {
    const { server, agent } = await setup(t, [
      { toolUse: { name: 'execute_code', input: { language: 'python' } } },
      { toolUse: { name: 'run_python', input: { code: 'print(1)' } } },
      { toolUse: { name: 'execute_code', input: null, rawInput: '{"code": "print(1)"' } },
      { toolUse: { name: 'execute_code', input: { code: 'print(6*7)' } } },
      { text: 'It is 42.' },
    ])
    const target = new FakeTarget(() => cellResult('42\n'))
    const { events, result, error } = await drain(agent.answer({ ...ask, tools: target }))
    assert.equal(error, undefined, String(error))
    assert.equal(result!.text, 'It is 42.')
    const r = results(events)
    assert.equal(r.length, 4)
    assert.deepEqual(
      r.map((x) => x.isError),
      [true, true, true, false],
    )
    assert.match(r[0]!.text, /^ValidationError: execute_code\.code: /)
    assert.equal(
      r[1]!.text,
      'ValidationError: name: unknown tool "run_python"; the tools are execute_code, execute_command, write_files, read_files, list_files, remove_files, start_task, get_task, stop_task',
    )
    assert.equal(r[2]!.text, 'ValidationError: execute_code: the arguments are not valid JSON: {"code": "print(1)"')
    // The model saw each of those texts and could correct itself; only the good call reached the session.
    assert.deepEqual(server.requests[3]!.toolResults.slice(0, 3), [r[0]!.text, r[1]!.text, r[2]!.text])
    assert.equal(target.calls.length, 1)
    assert.equal(target.calls[0]!.args.code, 'print(6*7)')
  })

  test('an error the model caused (NotFound) is a tool result; a non-zero exit is data', async (t) => {
    const { server, agent } = await setup(t, [
      { toolUse: { name: 'read_files', input: { paths: ['data.csv'] } } },
      { toolUse: { name: 'execute_command', input: { command: 'false' } } },
      { text: 'done' },
    ])
    const target = new FakeTarget((call) => {
      if (call.name === 'readFiles') throw new CodeboxError('NotFound', "'data.csv' does not exist")
      return cellResult('', { stderr: 'failed\n', exitCode: 1 })
    })
    const { events, result } = await drain(agent.answer({ ...ask, tools: target }))
    assert.equal(result?.text, 'done')
    const r = results(events)
    assert.equal(r[0]!.text, "NotFound: 'data.csv' does not exist")
    assert.equal(r[0]!.isError, true)
    assert.equal(r[1]!.exitCode, 1)
    assert.equal(r[1]!.isError, true)
    assert.match(server.requests[2]!.toolResults[1]!, /^failed\n+\[error \(exit code 1\)\]$/)
    const use = events.find((e) => e.type === 'tool_use' && e.name === 'execute_command')
    assert.equal((use as { code?: string }).code, 'false')
  })

  test('a failure the model cannot fix (the session ended) ends the turn with its code', async (t) => {
    const { server, agent } = await setup(t, () => ({ toolUse: { name: 'execute_code', input: { code: 'x' } } }))
    const target = new FakeTarget(() => {
      throw new CodeboxError('SessionTerminated', 'session s-1 has ended')
    })
    const { events, error } = await drain(agent.answer({ ...ask, tools: target }))
    assert.ok(error instanceof CodeboxError)
    assert.equal(error.code, 'SessionTerminated')
    assert.deepEqual(events.at(-1), { type: 'error', code: 'SessionTerminated', message: 'session s-1 has ended' })
    assert.equal(server.requests.length, 1, 'no model call after the fatal error')
  })
})

describe('limits', () => {
  test('maxSteps: the turn ends with LimitExceeded after that many model calls', async (t) => {
    const { server, agent } = await setup(t, () => ({ toolUse: { name: 'execute_code', input: { code: 'print(1)' } } }), { maxSteps: 3 })
    const { events, error } = await drain(agent.answer({ ...ask, tools: new FakeTarget() }))
    assert.ok(error instanceof CodeboxError)
    assert.equal(error.code, 'LimitExceeded')
    assert.match(error.message, /3 model calls \(CODEBOX_AGENT_MAX_STEPS\)/)
    assert.equal(server.requests.length, 3)
    assert.deepEqual(events.at(-1), { type: 'error', code: 'LimitExceeded', message: error.message })
  })

  test('maxTurnTokens: the turn ends with LimitExceeded once the tokens are spent', async (t) => {
    const big = { inputTokens: 6000, outputTokens: 100 }
    const { server, agent } = await setup(t, () => ({ toolUse: { name: 'execute_code', input: { code: 'print(1)' } }, usage: big }), { maxTurnTokens: 10_000 })
    const { error } = await drain(agent.answer({ ...ask, tools: new FakeTarget() }))
    assert.equal((error as CodeboxError).code, 'LimitExceeded')
    assert.match(error!.message, /10000 tokens \(CODEBOX_AGENT_TURN_TOKENS\)/)
    assert.equal(server.requests.length, 2)
  })

  test('turnTimeoutMs: Timeout, and the running tool call is stopped', async (t) => {
    const { agent } = await setup(t, [{ toolUse: { name: 'execute_code', input: { code: 'while True: pass' } } }], { turnTimeoutMs: 500 })
    const target = new FakeTarget((call) => untilAborted(call.signal))
    const started = Date.now()
    const { events, error } = await drain(agent.answer({ ...ask, tools: target }))
    assert.equal((error as CodeboxError).code, 'Timeout')
    assert.match(error!.message, /0.5 s \(CODEBOX_AGENT_TURN_TIMEOUT_SECONDS\)/)
    assert.ok(Date.now() - started < 5000)
    assert.equal(target.calls[0]!.aborted, true)
    assert.equal(events.at(-1)!.type, 'error')
  })
  test('turnTimeoutMs holds even when the session ignores the cancel signal', async (t) => {
    const { agent } = await setup(t, [{ toolUse: { name: 'execute_code', input: { code: 'x' } } }], { turnTimeoutMs: 300 })
    const target = new FakeTarget(() => new Promise(() => {}))
    const started = Date.now()
    const { error } = await drain(agent.answer({ ...ask, tools: target }))
    assert.equal((error as CodeboxError).code, 'Timeout')
    assert.ok(Date.now() - started < 3000)
  })
})

describe('cancellation', () => {
  test('the caller aborts mid tool call: the cell is interrupted, an error event, then the AbortError', async (t) => {
    const { server, agent } = await setup(t, [{ text: 'Running it.', toolUse: { name: 'execute_code', input: { code: 'import time; time.sleep(600)' } } }])
    let entered!: () => void
    const running = new Promise<void>((resolve) => (entered = resolve))
    const handler: Handler = (call) => {
      entered()
      return untilAborted(call.signal)
    }
    const target = new FakeTarget(handler)
    const controller = new AbortController()
    void running.then(() => controller.abort())
    const { events, error } = await drain(agent.answer({ ...ask, tools: target, signal: controller.signal }))
    assert.equal(error?.name, 'AbortError')
    assert.equal(target.calls.length, 1)
    assert.equal(target.calls[0]!.aborted, true, "the tool call's signal aborted (the server interrupts the cell)")
    assert.deepEqual(shape(events), ['model', 'text', 'tool_use', 'tool_result', 'error'])
    const use = events.find((e) => e.type === 'tool_use')!
    assert.deepEqual(results(events), [{ type: 'tool_result', toolUseId: use.toolUseId, isError: true, text: 'canceled', images: [] }])
    assert.deepEqual(events.at(-1), { type: 'error', code: 'Canceled', message: error!.message })
    assert.equal(server.requests.length, 1)
  })

  test('the caller aborts while the model streams: the request is abandoned at once', async (t) => {
    const { agent } = await setup(t, [{ hang: true }])
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 200)
    const started = Date.now()
    const { error } = await drain(agent.answer({ ...ask, tools: new FakeTarget(), signal: controller.signal }))
    assert.equal(error?.name, 'AbortError')
    assert.ok(Date.now() - started < 3000)
    assert.equal(agent.status().models[0]!.state, 'unknown', 'a cancellation is not the model failing')
  })
})
