/**
 * The agent's configuration from the environment: the model chain of `CODEBOX_AGENT_MODELS`
 * (`provider:model[@endpoint]`, comma-separated, split at the first colon because Bedrock ids and
 * Ollama tags contain colons) and the limits. Read once by the host and passed to createAgent;
 * nothing here reads process.env on its own. No chain is ever made up from ambient credentials.
 */
import { agentProviders, validationError, type AgentProvider } from '@codebox/core'
import type { AgentLimits, AgentOptions, ModelSpec } from './types.ts'

/** Default limits of a turn (see AgentLimits). */
export const defaultLimits: Readonly<AgentLimits> = Object.freeze({
  maxSteps: 20,
  maxTokensPerCall: 4096,
  maxTurnTokens: 200_000,
  turnTimeoutMs: 600_000,
  modelTimeoutMs: 120_000,
})

/** Default cool-down of a failed model before it is tried first again: 60 s. */
export const defaultRetryAfterMs = 60_000

const VAR = 'CODEBOX_AGENT_MODELS'

/**
 * Parses `CODEBOX_AGENT_MODELS`: `anthropic:claude-sonnet-4-5, bedrock:us.amazon.nova-premier-v1:0,
 * openai:llama3.1:8b@http://127.0.0.1:11434/v1`. Empty or blank means no model. A bad entry
 * throws a ValidationError naming the variable, the entry and what is wrong.
 */
export function parseModelChain(spec: string): ModelSpec[] {
  if (spec.trim() === '') return []
  return spec.split(',').map((raw, i) => parseEntry(raw.trim(), i + 1))
}

function parseEntry(entry: string, position: number): ModelSpec {
  const fail = (what: string) => validationError(VAR, `${entry === '' ? `entry ${position}` : JSON.stringify(entry)}: ${what}`)
  if (entry === '') throw fail('empty entry (a comma too many?)')
  const colon = entry.indexOf(':')
  if (colon < 0) throw fail(`expected provider:model with provider ${agentProviders.join(', ')}`)
  const provider = entry.slice(0, colon).trim()
  if (!(agentProviders as readonly string[]).includes(provider)) throw fail(`unknown provider ${JSON.stringify(provider)}; use ${agentProviders.join(', ')}`)
  let model = entry.slice(colon + 1).trim()
  let endpoint: string | undefined
  const at = model.search(/@https?:\/\//)
  if (at >= 0) {
    endpoint = model.slice(at + 1).trim()
    model = model.slice(0, at).trim()
    let url: URL
    try {
      url = new URL(endpoint)
    } catch {
      throw fail(`endpoint ${JSON.stringify(endpoint)} is not a URL`)
    }
    if (url.username || url.password) throw fail('the endpoint must not carry credentials; set the provider’s key variable instead')
    endpoint = endpoint.replace(/\/+$/, '')
  }
  if (model === '') throw fail('model id missing after the provider')
  if (/\s/.test(model)) throw fail('model id contains white space')
  if (model.includes('@')) throw fail('an endpoint after @ must start with http:// or https://')
  return { provider: provider as AgentProvider, model, ...(endpoint ? { endpoint } : {}), id: `${provider}:${model}` }
}

/**
 * AgentOptions from the environment: `CODEBOX_AGENT_MODELS` and the limits
 * (`CODEBOX_AGENT_RETRY_SECONDS` 60, `CODEBOX_AGENT_MAX_STEPS` 20, `CODEBOX_AGENT_MAX_TOKENS` 4096,
 * `CODEBOX_AGENT_TURN_TOKENS` 200000, `CODEBOX_AGENT_TURN_TIMEOUT_SECONDS` 600,
 * `CODEBOX_AGENT_MODEL_TIMEOUT_SECONDS` 120). `env` is also where provider credentials are read.
 */
export function agentOptionsFromEnv(env: Record<string, string | undefined>): AgentOptions {
  return {
    models: parseModelChain(env[VAR] ?? ''),
    env,
    retryAfterMs: intVar(env, 'CODEBOX_AGENT_RETRY_SECONDS', defaultRetryAfterMs / 1000, 0, 86_400) * 1000,
    limits: {
      maxSteps: intVar(env, 'CODEBOX_AGENT_MAX_STEPS', defaultLimits.maxSteps, 1, 1000),
      maxTokensPerCall: intVar(env, 'CODEBOX_AGENT_MAX_TOKENS', defaultLimits.maxTokensPerCall, 1, 1_000_000),
      maxTurnTokens: intVar(env, 'CODEBOX_AGENT_TURN_TOKENS', defaultLimits.maxTurnTokens, 1, 100_000_000),
      turnTimeoutMs: intVar(env, 'CODEBOX_AGENT_TURN_TIMEOUT_SECONDS', defaultLimits.turnTimeoutMs / 1000, 1, 86_400) * 1000,
      modelTimeoutMs: intVar(env, 'CODEBOX_AGENT_MODEL_TIMEOUT_SECONDS', defaultLimits.modelTimeoutMs / 1000, 1, 3600) * 1000,
    },
  }
}

/** A whole-number environment variable within [min, max], or a ValidationError naming it. */
function intVar(env: Record<string, string | undefined>, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim()
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!/^\d+$/.test(raw) || !Number.isInteger(n) || n < min || n > max)
    throw validationError(name, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`)
  return n
}

/** Limits with the defaults filled in, each checked to be a positive whole number. */
export function resolveLimits(limits: Partial<AgentLimits> = {}): AgentLimits {
  const resolved = { ...defaultLimits, ...limits }
  for (const [key, value] of Object.entries(resolved)) {
    if (!Number.isInteger(value) || value <= 0) throw validationError(`limits.${key}`, `must be a positive whole number, got ${String(value)}`)
  }
  return resolved
}

/**
 * What to set when no model is configured: the text of ModelNotConfigured errors, the status
 * hint and the CLI's message.
 */
export function describeMissingModel(): string {
  return (
    'No model is configured for the codebox agent. Set CODEBOX_AGENT_MODELS to an ordered, comma-separated chain of provider:model ' +
    '(providers anthropic, bedrock, openai) and the provider’s credentials, then restart the server. Examples: ' +
    'CODEBOX_AGENT_MODELS=anthropic:claude-sonnet-4-5 with ANTHROPIC_API_KEY (ANTHROPIC_BASE_URL optional); ' +
    'CODEBOX_AGENT_MODELS=bedrock:us.anthropic.claude-3-7-sonnet-20250219-v1:0 with AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and AWS_REGION ' +
    '(AWS_ENDPOINT_URL_BEDROCK_RUNTIME optional); CODEBOX_AGENT_MODELS=openai:gpt-4o with OPENAI_API_KEY (OPENAI_BASE_URL optional); ' +
    'a local server: CODEBOX_AGENT_MODELS=openai:llama3.1:8b@http://127.0.0.1:11434/v1 (no key needed). See docs/agent.md.'
  )
}
