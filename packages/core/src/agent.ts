/**
 * The codebox agent on the wire: what the runtime contract (`POST /invocations`, `/ws`), the IDE's
 * REST routes, the AWS `InvokeAgentRuntime` path, A2A, the SDK and the CLI exchange. One event
 * shape for every door: a turn is a stream of `AgentEvent`s that ends in `final` or `error`.
 */
import { z } from 'zod'

/** The providers a model of `CODEBOX_AGENT_MODELS` can name. */
export const agentProviders = ['anthropic', 'bedrock', 'openai'] as const
export type AgentProvider = (typeof agentProviders)[number]

/** A conversation id: also AgentCore's runtime session id, so 1-256 safe characters (AWS requires ≥ 33 on its path). */
export const conversationIdSchema = z.string().regex(/^[0-9a-zA-Z_.:-]{1,256}$/, 'must be 1-256 letters, digits, _ . : or -')

/** A skipped model and why (`anthropic:claude-x: 529 overloaded`). */
export const modelSkipSchema = z.object({ model: z.string(), reason: z.string() })
export type ModelSkip = z.infer<typeof modelSkipSchema>

/** Token counts of a model call or a whole turn. */
export const agentUsageSchema = z.object({ inputTokens: z.number(), outputTokens: z.number() })
export type AgentUsage = z.infer<typeof agentUsageSchema>

const imageSchema = z.object({ mimeType: z.string(), data: z.string().describe('base64') })

/**
 * One event of an agent turn, in the order they happen:
 * - `turn_start`: the conversation and its code session (the server adds these ids).
 * - `model`: the model that answers from here on; `skipped` lists the models tried before it and why.
 * - `text`: a piece of the model's text, as it streams.
 * - `tool_use`: the model calls a tool; for execute_code/execute_command, `code` and `language` repeat the input for display.
 * - `tool_output`: stdout or stderr of the running tool call, as produced.
 * - `tool_result`: how the tool call ended (`text` is what the model sees; images are the charts the code drew).
 * - `final`: the answer; `code` only for the generate role.
 * - `error`: the turn failed (`code` is a codebox error code); no `final` follows.
 */
export const agentEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('turn_start'), conversationId: z.string(), sessionId: z.string().optional(), role: z.enum(['answer', 'generate']) }),
  z.object({ type: z.literal('model'), model: z.string(), skipped: z.array(modelSkipSchema) }),
  z.object({ type: z.literal('text'), delta: z.string() }),
  z.object({
    type: z.literal('tool_use'),
    toolUseId: z.string(),
    name: z.string(),
    input: z.record(z.string(), z.unknown()),
    code: z.string().optional(),
    language: z.string().optional(),
  }),
  z.object({ type: z.literal('tool_output'), toolUseId: z.string(), stream: z.enum(['stdout', 'stderr']), text: z.string() }),
  z.object({
    type: z.literal('tool_result'),
    toolUseId: z.string(),
    isError: z.boolean(),
    text: z.string(),
    exitCode: z.number().optional(),
    images: z.array(imageSchema),
  }),
  z.object({
    type: z.literal('final'),
    text: z.string(),
    model: z.string(),
    skipped: z.array(modelSkipSchema),
    stopReason: z.string(),
    usage: agentUsageSchema,
    code: z.string().optional(),
    language: z.string().optional(),
  }),
  z.object({ type: z.literal('error'), code: z.string(), message: z.string() }),
])
export type AgentEvent = z.infer<typeof agentEventSchema>

/**
 * `POST /invocations` body (the AgentCore Runtime contract): `{prompt}`, also accepted as
 * `{input: {prompt}}` (the FastAPI form of seed 002). Unknown fields are ignored, as an agent
 * runtime receives whatever payload its caller sends.
 */
export const invocationRequestSchema = z.looseObject({
  prompt: z.string().min(1).max(100_000).optional(),
  input: z.looseObject({ prompt: z.string().min(1).max(100_000).optional() }).optional(),
})

/** The JSON reply of `POST /invocations` (without `Accept: text/event-stream`). */
export const invocationResponseSchema = z.object({
  result: z.string().describe('The final answer.'),
  output: z.object({ message: z.object({ role: z.literal('assistant'), content: z.array(z.object({ text: z.string() })) }) }),
  conversationId: z.string(),
  sessionId: z.string().optional().describe('The conversation’s code session.'),
  model: z.string(),
  skipped: z.array(modelSkipSchema),
  usage: agentUsageSchema,
  events: z.array(agentEventSchema).describe('Every event of the turn, text deltas merged.'),
})
export type InvocationResponse = z.infer<typeof invocationResponseSchema>

/** `POST /v1/agent/generate` body: code for the user to edit, not run. */
/** A turn's choice of model: a `provider:model` of the configured chain, tried first; the rest of the chain stays its fallback. */
export const turnModelSchema = z
  .string()
  .min(1)
  .max(300)
  .describe(
    'Try this model of the chain first (`provider:model`, as `GET /v1/agent/status` lists it); the rest of the chain stays the fallback. Default the chain’s order.',
  )

export const generateRequestSchema = z.strictObject({
  prompt: z.string().min(1).max(100_000),
  language: z.enum(['python', 'javascript', 'typescript']).default('python'),
  conversationId: conversationIdSchema.optional().describe('Continue this conversation; default a new one.'),
  model: turnModelSchema.optional(),
})
export const generateResponseSchema = z.object({
  conversationId: z.string(),
  code: z.string(),
  language: z.string(),
  text: z.string().describe('The model’s whole reply (the code block and any explanation).'),
  model: z.string(),
  skipped: z.array(modelSkipSchema),
})
export type GenerateResponse = z.infer<typeof generateResponseSchema>

/** `POST /v1/agent/ask` body: the answer role, as `/invocations` but with codebox's own names. */
export const askRequestSchema = z.strictObject({
  prompt: z.string().min(1).max(100_000),
  conversationId: conversationIdSchema.optional().describe('Continue this conversation; default a new one.'),
  model: turnModelSchema.optional(),
  sessionId: z
    .string()
    .regex(/^[0-9a-zA-Z]{1,40}$/, 'must be 1-40 letters and digits')
    .optional()
    .describe(
      'Run the turn’s code in this session of yours (the web IDE sends its own), so the code sees its files and variables; default the conversation’s own code session. The session is yours: stopping or deleting the conversation does not stop it.',
    ),
})

/** One stored turn of a conversation (short-term memory). */
export const agentTurnSchema = z.object({
  turnId: z.number(),
  conversationId: z.string(),
  role: z.enum(['answer', 'generate']),
  prompt: z.string(),
  text: z.string().describe('The final answer (or the error message when the turn failed).'),
  outcome: z.enum(['ok', 'error', 'canceled']),
  model: z.string().optional(),
  skipped: z.array(modelSkipSchema),
  usage: agentUsageSchema,
  events: z.array(agentEventSchema).describe('The turn’s events, text deltas merged.'),
  createdAt: z.string(),
})
export type AgentTurn = z.infer<typeof agentTurnSchema>

export const conversationSchema = z.object({
  conversationId: z.string(),
  actor: z.string(),
  title: z.string().describe('The first prompt, shortened.'),
  sessionId: z.string().optional().describe('The code session the conversation owns, while it lives.'),
  turns: z.number(),
  createdAt: z.string(),
  lastUpdatedAt: z.string(),
  expiresAt: z.string(),
})
export type Conversation = z.infer<typeof conversationSchema>
export const conversationListSchema = z.object({ items: z.array(conversationSchema), nextToken: z.string().optional() })
export const conversationHistorySchema = z.object({ conversation: conversationSchema, turns: z.array(agentTurnSchema) })

/** `GET /v1/agent/status`: the configured chain and how each model fared. */
export const agentStatusSchema = z.object({
  configured: z.boolean(),
  hint: z.string().optional().describe('What to set when no model is configured.'),
  models: z.array(
    z.object({
      model: z.string().describe('provider:model as configured (endpoint not included).'),
      provider: z.enum(agentProviders),
      endpoint: z.string().optional(),
      state: z.enum(['unknown', 'ok', 'cooling-down']),
      lastError: z.string().optional(),
      retryAt: z.string().optional().describe('When a model that failed is tried first again.'),
    }),
  ),
  lastAnswered: z.object({ model: z.string(), at: z.string() }).optional(),
})
export type AgentStatus = z.infer<typeof agentStatusSchema>
