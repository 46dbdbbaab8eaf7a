/**
 * One Strands model per chain entry, built from the provider's standard variables in the agent's
 * `env` (never from process.env behind its back): Anthropic (ANTHROPIC_API_KEY,
 * ANTHROPIC_BASE_URL), Bedrock (the AWS credential chain, AWS_REGION,
 * AWS_ENDPOINT_URL_BEDROCK_RUNTIME) and any OpenAI-compatible chat-completions server
 * (OPENAI_API_KEY, OPENAI_BASE_URL). An entry's `@endpoint` overrides the base URL. Client-side
 * retries are off (the fallback chain decides what happens next) and maxTokens is always set.
 */
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import type { Model } from '@strands-agents/sdk'
import { AnthropicModel } from '@strands-agents/sdk/models/anthropic'
import { BedrockModel } from '@strands-agents/sdk/models/bedrock'
import { OpenAIModel } from '@strands-agents/sdk/models/openai'
import { NodeHttp2Handler } from '@smithy/node-http-handler'
import type { ModelSpec } from './types.ts'

/** A model ready for one call (or, when `shared`, for every call of every turn). */
export interface ProviderModel {
  model: Model
  /** Whether tool-result images are passed to this model as image content. */
  takesImages: boolean
  /** Reusable across calls (it honours the per-call cancel signal itself). */
  shared: boolean
  /** Frees connections (the Bedrock client's HTTP/2 sessions). */
  dispose(): void
}

/** Thrown when an entry lacks what its provider needs (a key, a region); the chain skips it as refused. */
export class ProviderConfigError extends Error {
  override name = 'ProviderConfigError'
}

type Env = Record<string, string | undefined>

/** Sent as the key to a server given by an endpoint when no key is set (Ollama, vLLM and llama.cpp need none). */
const PLACEHOLDER_KEY = 'codebox-no-key'

/**
 * Builds the Strands model for `spec`. `signal` aborts this call's HTTP request (the Anthropic
 * model of Strands does not forward its cancel signal, so its client's fetch carries it).
 */
export function createProviderModel(spec: ModelSpec, env: Env, maxTokens: number, signal: AbortSignal): ProviderModel {
  switch (spec.provider) {
    case 'anthropic':
      return anthropicModel(spec, env, maxTokens, signal)
    case 'openai':
      return openaiModel(spec, env, maxTokens)
    case 'bedrock':
      return bedrockModel(spec, env, maxTokens)
  }
}

/** The base URL an entry talks to (for status; never carries credentials). */
export function endpointOf(spec: ModelSpec, env: Env): string | undefined {
  if (spec.endpoint) return spec.endpoint
  if (spec.provider === 'anthropic') return nonEmpty(env.ANTHROPIC_BASE_URL)
  if (spec.provider === 'openai') return nonEmpty(env.OPENAI_BASE_URL)
  return nonEmpty(env.AWS_ENDPOINT_URL_BEDROCK_RUNTIME) ?? nonEmpty(env.AWS_ENDPOINT_URL)
}

const nonEmpty = (v: string | undefined): string | undefined => (v && v.trim() !== '' ? v.trim() : undefined)

function anthropicModel(spec: ModelSpec, env: Env, maxTokens: number, signal: AbortSignal): ProviderModel {
  const baseURL = endpointOf(spec, env)
  const apiKey = nonEmpty(env.ANTHROPIC_API_KEY) ?? (baseURL ? PLACEHOLDER_KEY : undefined)
  if (!apiKey) throw new ProviderConfigError('ANTHROPIC_API_KEY is not set')
  const client = new Anthropic({
    apiKey,
    authToken: null,
    baseURL: baseURL ?? 'https://api.anthropic.com',
    maxRetries: 0,
    fetch: (url: string | URL | Request, init?: RequestInit) => fetch(url, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, signal]) : signal }),
  })
  return { model: new AnthropicModel({ client, modelId: spec.model, maxTokens }), takesImages: true, shared: false, dispose: () => {} }
}

function openaiModel(spec: ModelSpec, env: Env, maxTokens: number): ProviderModel {
  const custom = endpointOf(spec, env)
  const apiKey = nonEmpty(env.OPENAI_API_KEY) ?? (custom ? PLACEHOLDER_KEY : undefined)
  if (!apiKey) throw new ProviderConfigError('OPENAI_API_KEY is not set (a local server needs only its endpoint: openai:<model>@http://…/v1)')
  const official = !custom || new URL(custom).hostname === 'api.openai.com'
  const client = new OpenAI({
    apiKey,
    baseURL: custom ?? 'https://api.openai.com/v1',
    organization: nonEmpty(env.OPENAI_ORG_ID) ?? null,
    project: nonEmpty(env.OPENAI_PROJECT_ID) ?? null,
    webhookSecret: null,
    maxRetries: 0,
  })
  // OpenAI's own API takes max_completion_tokens; some compatible servers read only max_tokens.
  const params = official ? undefined : { max_tokens: maxTokens }
  return {
    model: new OpenAIModel({ api: 'chat', client, modelId: spec.model, maxTokens, ...(params ? { params } : {}) }),
    takesImages: official,
    shared: true,
    dispose: () => {},
  }
}

function bedrockModel(spec: ModelSpec, env: Env, maxTokens: number): ProviderModel {
  const region = nonEmpty(env.AWS_REGION) ?? nonEmpty(env.AWS_DEFAULT_REGION)
  if (!region) throw new ProviderConfigError('AWS_REGION is not set')
  const accessKeyId = nonEmpty(env.AWS_ACCESS_KEY_ID)
  const secretAccessKey = nonEmpty(env.AWS_SECRET_ACCESS_KEY)
  const endpoint = endpointOf(spec, env)
  // The client's default handler (HTTP/2, one stream per session), made here so dispose() can close it.
  const requestHandler = new NodeHttp2Handler({ disableConcurrentStreams: true })
  const model = new BedrockModel({
    region,
    modelId: spec.model,
    maxTokens,
    ...(nonEmpty(env.AWS_BEARER_TOKEN_BEDROCK) ? { apiKey: env.AWS_BEARER_TOKEN_BEDROCK } : {}),
    clientConfig: {
      maxAttempts: 1,
      requestHandler,
      ...(endpoint ? { endpoint } : {}),
      // Keys in env are used as given; otherwise the AWS default chain (profile, SSO, instance role).
      ...(accessKeyId && secretAccessKey
        ? { credentials: { accessKeyId, secretAccessKey, ...(nonEmpty(env.AWS_SESSION_TOKEN) ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) } }
        : {}),
    },
  })
  return { model, takesImages: true, shared: true, dispose: () => requestHandler.destroy() }
}

/** The endpoint as status shows it: scheme, host, port and path only (no user info, no query). */
export function publicEndpoint(spec: ModelSpec, env: Env): string | undefined {
  const raw = endpointOf(spec, env)
  if (!raw) return undefined
  try {
    const url = new URL(raw)
    return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`
  } catch {
    return undefined
  }
}
