/** CODEBOX_AGENT_MODELS and the limits: what parses, what fails and how the failure reads. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { CodeboxError } from '@codebox/core'
import { agentOptionsFromEnv, describeMissingModel, extractCode, parseModelChain } from '../src/index.ts'

/** The ValidationError message a bad value gives. */
function failure(fn: () => unknown): string {
  try {
    fn()
  } catch (e) {
    assert.ok(e instanceof CodeboxError, `expected a CodeboxError, got ${String(e)}`)
    assert.equal(e.code, 'ValidationError')
    return e.message
  }
  assert.fail('expected a ValidationError')
}

describe('parseModelChain', () => {
  test('splits at the first colon: Bedrock ids and Ollama tags keep theirs', () => {
    assert.deepEqual(
      parseModelChain('bedrock:us.anthropic.claude-3-7-sonnet-20250219-v1:0, bedrock:us.amazon.nova-premier-v1:0,anthropic:claude-3-5-sonnet-latest'),
      [
        { provider: 'bedrock', model: 'us.anthropic.claude-3-7-sonnet-20250219-v1:0', id: 'bedrock:us.anthropic.claude-3-7-sonnet-20250219-v1:0' },
        { provider: 'bedrock', model: 'us.amazon.nova-premier-v1:0', id: 'bedrock:us.amazon.nova-premier-v1:0' },
        { provider: 'anthropic', model: 'claude-3-5-sonnet-latest', id: 'anthropic:claude-3-5-sonnet-latest' },
      ],
    )
  })

  test('an entry may carry its own endpoint after @, so one chain mixes OpenAI and a local server', () => {
    assert.deepEqual(parseModelChain(' openai:gpt-4o ,  openai:llama3.1:8b@http://127.0.0.1:11434/v1/ '), [
      { provider: 'openai', model: 'gpt-4o', id: 'openai:gpt-4o' },
      { provider: 'openai', model: 'llama3.1:8b', endpoint: 'http://127.0.0.1:11434/v1', id: 'openai:llama3.1:8b' },
    ])
    assert.equal(parseModelChain('anthropic:claude-x@https://proxy.example.com')[0]!.endpoint, 'https://proxy.example.com')
  })

  test('empty or blank means no model', () => {
    assert.deepEqual(parseModelChain(''), [])
    assert.deepEqual(parseModelChain('   '), [])
  })

  test('a bad entry names the variable, the entry and what is wrong', () => {
    assert.match(
      failure(() => parseModelChain('gemini:pro')),
      /^CODEBOX_AGENT_MODELS: "gemini:pro": unknown provider "gemini"; use anthropic, bedrock, openai$/,
    )
    assert.match(
      failure(() => parseModelChain('anthropic:a,,openai:b')),
      /CODEBOX_AGENT_MODELS: entry 2: empty entry/,
    )
    assert.match(
      failure(() => parseModelChain('anthropic:a,')),
      /CODEBOX_AGENT_MODELS: entry 2: empty entry/,
    )
    assert.match(
      failure(() => parseModelChain('claude-3')),
      /"claude-3": expected provider:model/,
    )
    assert.match(
      failure(() => parseModelChain('openai:')),
      /"openai:": model id missing/,
    )
    assert.match(
      failure(() => parseModelChain('openai:@http://x:1/v1')),
      /model id missing/,
    )
    assert.match(
      failure(() => parseModelChain('openai:llama@ftp://x')),
      /endpoint after @ must start with http/,
    )
    assert.match(
      failure(() => parseModelChain('openai:llama@http://')),
      /is not a URL/,
    )
    assert.match(
      failure(() => parseModelChain('openai:llama@http://user:secret@host/v1')),
      /must not carry credentials/,
    )
    assert.match(
      failure(() => parseModelChain('openai:my model')),
      /white space/,
    )
  })
})

describe('agentOptionsFromEnv', () => {
  test('defaults', () => {
    const o = agentOptionsFromEnv({})
    assert.deepEqual(o.models, [])
    assert.equal(o.retryAfterMs, 60_000)
    assert.deepEqual(o.limits, { maxSteps: 20, maxTokensPerCall: 4096, maxTurnTokens: 200_000, turnTimeoutMs: 600_000, modelTimeoutMs: 120_000 })
  })

  test('reads every variable', () => {
    const o = agentOptionsFromEnv({
      CODEBOX_AGENT_MODELS: 'anthropic:claude-x',
      CODEBOX_AGENT_RETRY_SECONDS: '5',
      CODEBOX_AGENT_MAX_STEPS: '3',
      CODEBOX_AGENT_MAX_TOKENS: '1000',
      CODEBOX_AGENT_TURN_TOKENS: '9000',
      CODEBOX_AGENT_TURN_TIMEOUT_SECONDS: '30',
      CODEBOX_AGENT_MODEL_TIMEOUT_SECONDS: '10',
    })
    assert.equal(o.models[0]!.id, 'anthropic:claude-x')
    assert.equal(o.retryAfterMs, 5000)
    assert.deepEqual(o.limits, { maxSteps: 3, maxTokensPerCall: 1000, maxTurnTokens: 9000, turnTimeoutMs: 30_000, modelTimeoutMs: 10_000 })
  })

  test('a bad value names its variable', () => {
    assert.match(
      failure(() => agentOptionsFromEnv({ CODEBOX_AGENT_MAX_STEPS: '0' })),
      /^CODEBOX_AGENT_MAX_STEPS: must be a whole number from 1 to/,
    )
    assert.match(
      failure(() => agentOptionsFromEnv({ CODEBOX_AGENT_RETRY_SECONDS: '1.5' })),
      /^CODEBOX_AGENT_RETRY_SECONDS:/,
    )
    assert.match(
      failure(() => agentOptionsFromEnv({ CODEBOX_AGENT_MAX_TOKENS: 'lots' })),
      /^CODEBOX_AGENT_MAX_TOKENS:/,
    )
    assert.match(
      failure(() => agentOptionsFromEnv({ CODEBOX_AGENT_TURN_TOKENS: '-5' })),
      /^CODEBOX_AGENT_TURN_TOKENS:/,
    )
    assert.match(
      failure(() => agentOptionsFromEnv({ CODEBOX_AGENT_TURN_TIMEOUT_SECONDS: '1e3' })),
      /^CODEBOX_AGENT_TURN_TIMEOUT_SECONDS:/,
    )
    assert.match(
      failure(() => agentOptionsFromEnv({ CODEBOX_AGENT_MODEL_TIMEOUT_SECONDS: '99999' })),
      /^CODEBOX_AGENT_MODEL_TIMEOUT_SECONDS:/,
    )
    assert.match(
      failure(() => agentOptionsFromEnv({ CODEBOX_AGENT_MODELS: 'foo:bar' })),
      /^CODEBOX_AGENT_MODELS:/,
    )
  })

  test('ambient credentials alone configure nothing', () => {
    assert.deepEqual(
      agentOptionsFromEnv({ ANTHROPIC_API_KEY: 'sk-ant-x', AWS_ACCESS_KEY_ID: 'AKIAXXXXXXXXXXXXXXXX', AWS_SECRET_ACCESS_KEY: 's', OPENAI_API_KEY: 'sk-x' })
        .models,
      [],
    )
  })

  test('the missing-model hint names the variables to set', () => {
    const hint = describeMissingModel()
    for (const name of [
      'CODEBOX_AGENT_MODELS',
      'ANTHROPIC_API_KEY',
      'OPENAI_API_KEY',
      'OPENAI_BASE_URL',
      'AWS_REGION',
      'ANTHROPIC_BASE_URL',
      'AWS_ENDPOINT_URL_BEDROCK_RUNTIME',
    ]) {
      assert.ok(hint.includes(name), `hint names ${name}`)
    }
  })
})

describe('extractCode', () => {
  test('the block in the requested language, else the first block, else the whole text', () => {
    assert.equal(extractCode('Here:\n```python\nprint(1)\nprint(2)\n```\nIt prints.', 'python'), 'print(1)\nprint(2)')
    assert.equal(extractCode('```sh\nls\n```\n\n```py\nx = 1\n```', 'python'), 'x = 1')
    assert.equal(extractCode('```js\nconsole.log(1)\n```', 'typescript'), 'console.log(1)')
    assert.equal(extractCode('  print("no fence")  \n', 'python'), 'print("no fence")')
    assert.equal(extractCode('Start:\n```python\nprint(1)\n# cut off', 'python'), 'print(1)\n# cut off')
    assert.equal(extractCode('````python\nprint("```")\n````', 'python'), 'print("```")')
  })
})
