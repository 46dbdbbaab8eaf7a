/**
 * The fallback chain: down, throttled, overloaded, refused, silent and unreachable models hand
 * over to the next; the `model` event, `final` and status say who answered and why the others
 * were skipped; a failed model cools down and is tried first again afterwards; keys never show.
 */
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, test } from 'node:test'
import { CodeboxError, type AgentEvent } from '@codebox/core'
import { createAgent } from '../src/agent.ts'
import { agentOptionsFromEnv } from '../src/index.ts'
import { FakeTarget } from './fake-target.ts'
import { drain, modelServer } from './helpers.ts'
import { fakeKeys, modelEnv, startModelServer } from './model-servers.ts'

const ask = { prompt: 'What is 6 * 7?', history: [] }

describe('fallback', () => {
  test('529 → 429 → healthy: the third model answers and the model event says why the others were skipped', async (t) => {
    const anthropic = await modelServer(t, 'anthropic', [{ status: 529 }])
    const bedrock = await modelServer(t, 'bedrock', [{ status: 429, message: 'Too many tokens, please wait before trying again.' }])
    const openai = await modelServer(t, 'openai', () => ({ text: '42' }))
    const env = {
      ...modelEnv('anthropic', anthropic),
      ...modelEnv('bedrock', bedrock),
      ...modelEnv('openai', openai),
      CODEBOX_AGENT_MODELS: 'anthropic:claude-x,bedrock:us.amazon.nova-premier-v1:0,openai:gpt-x',
    }
    const agent = createAgent(agentOptionsFromEnv(env))
    const { events, result, error } = await drain(agent.answer({ ...ask, tools: new FakeTarget() }))
    assert.equal(error, undefined, String(error))
    const model = events[0] as Extract<AgentEvent, { type: 'model' }>
    assert.equal(model.type, 'model')
    assert.equal(model.model, 'openai:gpt-x')
    assert.deepEqual(
      model.skipped.map((s) => s.model),
      ['anthropic:claude-x', 'bedrock:us.amazon.nova-premier-v1:0'],
    )
    assert.match(model.skipped[0]!.reason, /^overloaded: HTTP 529 Overloaded$/)
    assert.match(model.skipped[1]!.reason, /^throttled: HTTP 429 Too many tokens/)
    assert.equal(result!.text, '42')
    assert.equal(result!.model, 'openai:gpt-x')
    assert.deepEqual(result!.skipped, model.skipped)

    const status = agent.status()
    assert.deepEqual(
      status.models.map((m) => [m.model, m.state]),
      [
        ['anthropic:claude-x', 'cooling-down'],
        ['bedrock:us.amazon.nova-premier-v1:0', 'cooling-down'],
        ['openai:gpt-x', 'ok'],
      ],
    )
    assert.match(status.models[0]!.lastError!, /529/)
    assert.ok(Date.parse(status.models[0]!.retryAt!) > Date.now() + 50_000, 'cool-down of the default 60 s')
    assert.equal(status.lastAnswered?.model, 'openai:gpt-x')

    // The next turn, within the cool-down: the failed models are not asked again.
    const second = await drain(agent.answer({ ...ask, tools: new FakeTarget() }))
    assert.equal(second.result?.model, 'openai:gpt-x')
    assert.equal(anthropic.requests.length, 1)
    assert.equal(bedrock.requests.length, 1)
    const again = second.events[0] as Extract<AgentEvent, { type: 'model' }>
    assert.match(again.skipped[0]!.reason, /^cooling down until \S+ after: overloaded: HTTP 529/)
  })

  test('after its cool-down the primary is tried first again', async (t) => {
    const primary = await modelServer(t, 'anthropic', [{ status: 503 }, { text: 'primary is back' }])
    const backup = await modelServer(t, 'openai', () => ({ text: 'backup answers' }))
    const env = { ...modelEnv('anthropic', primary), ...modelEnv('openai', backup), CODEBOX_AGENT_MODELS: 'anthropic:claude-x,openai:gpt-x' }
    const agent = createAgent({ ...agentOptionsFromEnv(env), retryAfterMs: 600 })
    assert.equal((await drain(agent.answer({ ...ask, tools: new FakeTarget() }))).result?.text, 'backup answers')
    assert.equal((await drain(agent.answer({ ...ask, tools: new FakeTarget() }))).result?.text, 'backup answers')
    assert.equal(primary.requests.length, 1, 'skipped while cooling down')
    assert.equal(agent.status().models[0]!.state, 'cooling-down')
    await sleep(700)
    const third = await drain(agent.answer({ ...ask, tools: new FakeTarget() }))
    assert.equal(third.result?.text, 'primary is back')
    assert.deepEqual(third.events[0], { type: 'model', model: 'anthropic:claude-x', skipped: [] })
    assert.equal(primary.requests.length, 2)
    assert.equal(agent.status().models[0]!.state, 'ok')
  })

  test('a turn’s chosen model is asked first; the rest of the chain stays its fallback; an unknown one is a ValidationError', async (t) => {
    const primary = await modelServer(t, 'anthropic', () => ({ text: 'primary' }))
    const local = await modelServer(t, 'openai', (_req, i) => (i === 0 ? { text: 'local answers' } : { status: 503 }))
    const env = { ...modelEnv('anthropic', primary), ...modelEnv('openai', local), CODEBOX_AGENT_MODELS: 'anthropic:claude-x,openai:llama3.2' }
    const agent = createAgent(agentOptionsFromEnv(env))
    const chosen = await drain(agent.answer({ ...ask, tools: new FakeTarget(), model: 'openai:llama3.2' }))
    assert.equal(chosen.result?.text, 'local answers')
    assert.deepEqual(chosen.events[0], { type: 'model', model: 'openai:llama3.2', skipped: [] }, 'nothing was skipped: the user chose it')
    assert.equal(primary.requests.length, 0)
    // The chosen model fails: the chain answers, and says why it was skipped.
    const fallback = await drain(agent.generate({ prompt: 'code', language: 'python', history: [], model: 'openai:llama3.2' }))
    assert.equal(fallback.result?.model, 'anthropic:claude-x')
    assert.deepEqual(
      fallback.result?.skipped.map((s) => s.model),
      ['openai:llama3.2'],
    )
    // Chosen while cooling down: still asked first (the user's choice), and it is the primary again afterwards.
    const third = await drain(agent.answer({ ...ask, tools: new FakeTarget(), model: 'openai:llama3.2' }))
    assert.equal(local.requests.length, 3)
    assert.equal(third.result?.model, 'anthropic:claude-x')
    const unknown = await drain(agent.answer({ ...ask, tools: new FakeTarget(), model: 'openai:gpt-9' }))
    assert.ok(unknown.error instanceof CodeboxError)
    assert.equal(unknown.error.code, 'ValidationError')
    assert.match(unknown.error.message, /model: must be one of the configured models \(anthropic:claude-x, openai:llama3\.2\), got "openai:gpt-9"/)
    assert.equal(primary.requests.length, 2)
  })

  test('a 401 or 403 also skips the model, reported as refused', async (t) => {
    const a = await modelServer(t, 'anthropic', [{ status: 401, message: 'invalid x-api-key' }])
    const b = await modelServer(t, 'bedrock', [{ status: 403, message: 'You do not have access to the model with the specified model ID.' }])
    const c = await modelServer(t, 'openai', [{ text: 'fine' }])
    const env = { ...modelEnv('anthropic', a), ...modelEnv('bedrock', b), ...modelEnv('openai', c), CODEBOX_AGENT_MODELS: 'anthropic:a,bedrock:b,openai:c' }
    const { result } = await drain(createAgent(agentOptionsFromEnv(env)).answer({ ...ask, tools: new FakeTarget() }))
    assert.deepEqual(result!.skipped, [
      { model: 'anthropic:a', reason: 'refused: HTTP 401 invalid x-api-key' },
      { model: 'bedrock:b', reason: 'refused: HTTP 403 You do not have access to the model with the specified model ID.' },
    ])
  })

  test('a model that hangs is left after modelTimeoutMs for the next', async (t) => {
    const silent = await modelServer(t, 'bedrock', [{ hang: true }])
    const backup = await modelServer(t, 'anthropic', [{ text: 'here' }])
    const env = { ...modelEnv('bedrock', silent), ...modelEnv('anthropic', backup), CODEBOX_AGENT_MODELS: 'bedrock:b:0,anthropic:a' }
    const agent = createAgent({ ...agentOptionsFromEnv(env), limits: { modelTimeoutMs: 400 } })
    const started = Date.now()
    const { result, error } = await drain(agent.answer({ ...ask, tools: new FakeTarget() }))
    const took = Date.now() - started
    assert.equal(error, undefined, String(error))
    assert.equal(result!.text, 'here')
    assert.deepEqual(result!.skipped, [{ model: 'bedrock:b:0', reason: 'timed out: no complete reply within 0.4 s' }])
    assert.ok(took >= 400 && took < 5000, `took ${took} ms`)
  })

  test('a model nobody listens for (connection refused) is skipped', async () => {
    const gone = await startModelServer('openai', [])
    await gone.close()
    const backup = await startModelServer('anthropic', [{ text: 'ok' }])
    try {
      const env = { ...modelEnv('openai', gone), ...modelEnv('anthropic', backup), CODEBOX_AGENT_MODELS: 'openai:gone,anthropic:a' }
      const { result } = await drain(createAgent(agentOptionsFromEnv(env)).answer({ ...ask, tools: new FakeTarget() }))
      assert.deepEqual(result!.skipped, [{ model: 'openai:gone', reason: 'unavailable: connection refused' }])
    } finally {
      await backup.close()
    }
  })

  test('every model failing is ModelUnavailable naming each model and why', async (t) => {
    const a = await modelServer(t, 'anthropic', [{ status: 500, message: 'Internal server error' }])
    const b = await modelServer(t, 'openai', [{ status: 400, message: 'model "x" not found, try pulling it first' }])
    const env = { ...modelEnv('anthropic', a), ...modelEnv('openai', b), CODEBOX_AGENT_MODELS: 'anthropic:a,openai:x' }
    const { events, error, result } = await drain(createAgent(agentOptionsFromEnv(env)).answer({ ...ask, tools: new FakeTarget() }))
    assert.equal(result, undefined)
    assert.ok(error instanceof CodeboxError)
    assert.equal(error.code, 'ModelUnavailable')
    assert.equal(error.status, 502)
    assert.equal(
      error.message,
      'every model of the chain failed: anthropic:a: unavailable: HTTP 500 Internal server error; openai:x: refused: HTTP 400 model "x" not found, try pulling it first',
    )
    assert.deepEqual(events, [{ type: 'error', code: 'ModelUnavailable', message: error.message }])
  })

  test('an entry without its credentials is skipped as not configured', async (t) => {
    const b = await modelServer(t, 'openai', [{ text: 'ok' }])
    const env = { ...modelEnv('openai', b), CODEBOX_AGENT_MODELS: 'anthropic:a,bedrock:b,openai:c' }
    const { result } = await drain(createAgent(agentOptionsFromEnv(env)).answer({ ...ask, tools: new FakeTarget() }))
    assert.deepEqual(result!.skipped, [
      { model: 'anthropic:a', reason: 'not configured: ANTHROPIC_API_KEY is not set' },
      { model: 'bedrock:b', reason: 'not configured: AWS_REGION is not set' },
    ])
  })

  test('a local OpenAI-compatible server without a key works (its endpoint given)', async (t) => {
    const local = await modelServer(t, 'openai', [{ text: 'local' }])
    const { result } = await drain(
      createAgent({ ...agentOptionsFromEnv({ CODEBOX_AGENT_MODELS: `openai:llama3.1:8b@${local.url}/v1` }), env: {} }).answer({
        ...ask,
        tools: new FakeTarget(),
      }),
    )
    assert.equal(result?.text, 'local')
    assert.equal(local.requests[0]!.model, 'llama3.1:8b')
  })

  test('no model configured: an error event naming what to set, ModelNotConfigured thrown, status says so', async () => {
    const agent = createAgent(agentOptionsFromEnv({ ANTHROPIC_API_KEY: fakeKeys.anthropic }))
    for (const turn of [agent.answer({ ...ask, tools: new FakeTarget() }), agent.generate({ prompt: 'x', language: 'python', history: [] })]) {
      const { events, error } = await drain(turn)
      assert.ok(error instanceof CodeboxError)
      assert.equal(error.code, 'ModelNotConfigured')
      assert.equal(error.status, 503)
      assert.match(error.message, /CODEBOX_AGENT_MODELS/)
      assert.match(error.message, /ANTHROPIC_API_KEY/)
      assert.deepEqual(events, [{ type: 'error', code: 'ModelNotConfigured', message: error.message }])
    }
    const status = agent.status()
    assert.equal(status.configured, false)
    assert.deepEqual(status.models, [])
    assert.match(status.hint!, /CODEBOX_AGENT_MODELS/)
  })
})

describe('secrets', () => {
  test('keys never appear in events, errors or status, even when a provider echoes them', async (t) => {
    const echo = (key: string) => ({ status: 401, message: `Incorrect API key provided: ${key}. You can find your API key at https://example.com.` })
    const a = await modelServer(t, 'anthropic', [echo(fakeKeys.anthropic)])
    const o = await modelServer(t, 'openai', [echo(fakeKeys.openai)])
    const b = await modelServer(t, 'bedrock', [
      { status: 403, message: `The security token ${fakeKeys.awsAccessKeyId} / ${fakeKeys.awsSecretAccessKey} is invalid.` },
    ])
    const env = { ...modelEnv('anthropic', a), ...modelEnv('openai', o), ...modelEnv('bedrock', b), CODEBOX_AGENT_MODELS: 'anthropic:a,openai:o,bedrock:b' }
    const target = new FakeTarget()
    const agent = createAgent(agentOptionsFromEnv(env))
    const { events, error } = await drain(agent.answer({ ...ask, tools: target }))
    assert.equal(error?.name, 'ModelUnavailable')
    const seen = JSON.stringify({ events, message: error?.message, details: (error as CodeboxError).details, status: agent.status() })
    for (const key of Object.values(fakeKeys)) assert.ok(!seen.includes(key), `${key} leaked: ${seen}`)
    assert.match(seen, /refused: HTTP 401 Incorrect API key provided: \[redacted\]/)
    assert.equal(a.requests.length + o.requests.length + b.requests.length, 3, 'every provider was asked (with its key)')
    assert.equal(target.calls.length, 0)
  })
})
