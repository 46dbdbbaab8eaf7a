/**
 * AWS's AgentCore Runtime data plane for the codebox agent: InvokeAgentRuntime
 * (`POST /runtimes/{agentRuntimeArn}/invocations`) and StopRuntimeSession
 * (`POST /runtimes/{agentRuntimeArn}/stopruntimesession`), so `@aws-sdk/client-bedrock-agentcore`
 * and boto3 reach the agent with only `endpoint` changed. The runtime is
 * `arn:aws:bedrock-agentcore:<region>:<account>:runtime/codebox-agent`, qualifier DEFAULT; the
 * runtime session id is the conversation. A thin mapping onto AgentDoor: the payload is the runtime
 * contract's `{"prompt": ...}`, the answer the same JSON (or SSE) `POST /invocations` gives.
 * A failure of the agent itself (no model, every model down, a turn that failed) is AWS's
 * RuntimeClientError (424), as AWS reports an agent's own error; the service's checks keep their
 * exceptions (ValidationException, AccessDeniedException, ResourceNotFoundException, ...).
 */
import { CodeboxError, invocationRequestSchema } from '@codebox/core'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { clientGone, collectTurn, invocationResponse, openTurn, SESSION_HEADER, streamTurn, USER_HEADER, wantsEventStream } from '../apis/runtime/turn-reply.ts'
import { parseJsonBody } from '../http/body.ts'
import { toCodeboxError } from '../http/errors.ts'
import type { AgentDoor } from '../services/agent-door.ts'
import { passThroughHeaders } from '../services/runtime-http.ts'
import { invokeHostedRuntime } from '../services/runtime-invoke.ts'
import type { HostedRuntimes } from '../services/runtime-sessions.ts'
import type { Caller } from '../services/sessions.ts'
import { awsValidation } from './errors.ts'
import { awsRoute } from './route.ts'
import { hostedProtocolRoutes } from './runtime-protocols.ts'

/** The one runtime codebox hosts today (the self-hosted Runtime for other agents is a later step). */
export const codeboxAgentRuntime = 'codebox-agent'
const runtimeSessionHeader = SESSION_HEADER
const runtimeUserHeader = USER_HEADER

const runtimeArnPattern = /^arn:aws[a-z-]*:bedrock-agentcore:([a-z0-9-]{1,32}):([0-9]{12}):runtime\/(.+)$/
/** AWS: 33-256 characters; the characters a conversation id may hold. */
const runtimeSessionIdPattern = /^[0-9a-zA-Z_.:-]{33,256}$/

const runtimeQuerySchema = z.object({
  qualifier: z.string().max(256).optional(),
  accountId: z.string().max(64).optional(),
})

export function runtimeRoutes(app: FastifyInstance, agent: AgentDoor, hosted?: HostedRuntimes): void {
  awsRoute(app, { method: 'POST', url: '/:agentRuntimeArn/invocations', query: runtimeQuerySchema }, async ({ caller, query, request, reply }) => {
    const name = runtimeOf(request)
    if (name !== codeboxAgentRuntime) return invokeHosted(hosted, { caller, name, qualifier: query.qualifier, request, reply })
    checkAgentQualifier(query.qualifier)
    const conversationId = sessionIdOf(request, false)
    const actor = userIdOf(request)
    const prompt = promptOf(request.body)
    // Before `turn_start` a failure is thrown: it becomes the AWS error of the whole call.
    const turn = await openTurn(agent, {
      caller,
      role: 'answer',
      prompt,
      ...(conversationId ? { conversationId } : {}),
      ...(actor ? { actor } : {}),
      // A caller that goes away cancels the turn (and the cell it runs).
      signal: clientGone(reply),
      requestId: request.id,
    })
    if (wantsEventStream(request.headers.accept)) {
      // streamTurn writes its own head: AWS's request id header joins it from here.
      reply.raw.setHeader('x-amzn-requestid', request.id)
      await streamTurn(request, reply, turn)
      return undefined
    }
    void reply.header(runtimeSessionHeader, turn.start.conversationId)
    let collected: Awaited<ReturnType<typeof collectTurn>>
    try {
      collected = await collectTurn(turn)
    } catch (e) {
      // After turn_start, a failure is the agent's own: AWS reports those as RuntimeClientError.
      const err = toCodeboxError(e)
      throw new CodeboxError(err.code, `the codebox agent failed (${err.code}): ${err.message}`, { details: { ...err.details, aws: 'RuntimeClientError' } })
    }
    if (reply.raw.destroyed) {
      reply.hijack()
      return undefined
    }
    void reply.type('application/json')
    return invocationResponse(collected)
  })

  awsRoute(app, { method: 'POST', url: '/:agentRuntimeArn/stopruntimesession', query: runtimeQuerySchema }, async ({ caller, query, request, reply }) => {
    const name = runtimeOf(request)
    if (name !== codeboxAgentRuntime) {
      if (!hosted)
        throw notFound(`No agent runtime named ${JSON.stringify(name)}: this codebox server hosts one runtime, ${codeboxAgentRuntime} (the codebox agent)`)
      const { runtime } = await hosted.runtimes.resolve(caller, name, query.qualifier).catch(awsNotFound)
      const runtimeSessionId = sessionIdOf(request, true)!
      await hosted.sessions.stop({ tenant: caller.tenant, runtimeId: runtime.runtimeId, runtimeSessionId }).catch(awsNotFound)
      void reply.header(runtimeSessionHeader, runtimeSessionId)
      return {}
    }
    checkAgentQualifier(query.qualifier)
    const conversationId = sessionIdOf(request, true)!
    await agent.stopConversation(caller, conversationId)
    void reply.header(runtimeSessionHeader, conversationId)
    return {}
  })

  // MCP's GET and DELETE, A2A's agent card, the WebSocket (runtime-protocols.ts).
  hostedProtocolRoutes(app, hosted)
}

/** The runtime the path's ARN names (ValidationException when it is not a runtime ARN). */
export function runtimeOf(request: FastifyRequest): string {
  const arn = (request.params as { agentRuntimeArn?: string }).agentRuntimeArn ?? ''
  const m = runtimeArnPattern.exec(arn)
  if (!m) {
    throw awsValidation(
      `agentRuntimeArn ${JSON.stringify(arn.slice(0, 300))} is not a runtime ARN; use arn:aws:bedrock-agentcore:<region>:<account>:runtime/<runtime id>`,
      'agentRuntimeArn',
    )
  }
  return m[3]!
}

/** codebox's NotFound as AWS's ResourceNotFoundException. */
export function awsNotFound(e: unknown): never {
  if (e instanceof CodeboxError && e.code === 'NotFound') throw notFound(e.message)
  throw e
}

/**
 * InvokeAgentRuntime of a deployed runtime (services/runtime-invoke.ts): the payload goes to the
 * runtime session's agent as it came (its sandbox is started on the session's first invocation),
 * and the agent's answer comes back as it is written, JSON or SSE. The agent's own failures (it
 * never became healthy, crashed, answered 5xx) are RuntimeClientError (424) with what it printed.
 */
export async function invokeHosted(
  hosted: HostedRuntimes | undefined,
  c: {
    caller: Caller
    name: string
    qualifier: string | undefined
    request: FastifyRequest
    reply: FastifyReply
    /** Default POST /invocations; MCP's GET and DELETE and A2A's agent card come through runtime-protocols.ts. */
    method?: 'GET' | 'POST' | 'DELETE'
    route?: 'invocations' | 'agent-card'
  },
): Promise<undefined> {
  const { caller, request, reply } = c
  if (!hosted)
    throw notFound(`No agent runtime named ${JSON.stringify(c.name)}: this codebox server hosts one runtime, ${codeboxAgentRuntime} (the codebox agent)`)
  const runtimeSessionId = sessionIdOf(request, false)
  const userId = userIdOf(request)
  const method = c.method ?? 'POST'
  const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
  const {
    response,
    runtimeSessionId: used,
    headers,
  } = await invokeHostedRuntime(hosted, {
    caller,
    runtime: c.name,
    ...(c.qualifier ? { qualifier: c.qualifier } : {}),
    ...(runtimeSessionId ? { runtimeSessionId } : {}),
    ...(userId ? { userId } : {}),
    callerHeaders: request.headers,
    // The runtime's protocol decides the agent's port and path (services/runtime-protocols.ts).
    ...(c.route ? { route: c.route } : {}),
    request: { method, ...(method === 'POST' || body.length > 0 ? { body } : {}), signal: clientGone(reply) },
    requestId: request.id,
  }).catch(awsNotFound)
  void reply.code(response.statusCode ?? 200).headers({ ...passThroughHeaders(response.headers), ...headers, [runtimeSessionHeader]: used })
  await reply.send(response)
  return undefined
}

/** The codebox agent (runtimeOf named it) has one endpoint, DEFAULT. */
function checkAgentQualifier(qualifier: string | undefined): void {
  if (qualifier !== undefined && qualifier !== 'DEFAULT') {
    throw notFound(`No endpoint ${JSON.stringify(qualifier)} for runtime ${codeboxAgentRuntime}: its only endpoint is DEFAULT`)
  }
}

export function notFound(message: string): CodeboxError {
  return new CodeboxError('NotFound', message, { details: { aws: 'ResourceNotFoundException' } })
}

/** The runtime session id header: 33-256 characters as AWS requires. */
export function sessionIdOf(request: FastifyRequest, required: boolean): string | undefined {
  const raw = request.headers[runtimeSessionHeader]
  const value = Array.isArray(raw) ? raw[0] : raw
  if (value === undefined || value === '') {
    if (required) throw awsValidation('the X-Amzn-Bedrock-AgentCore-Runtime-Session-Id header is required', 'runtimeSessionId')
    return undefined
  }
  if (!runtimeSessionIdPattern.test(value)) {
    throw awsValidation(
      `runtimeSessionId must be 33-256 letters, digits, _ . : or - (got ${value.length} characters)`,
      'runtimeSessionId',
      'FieldValidationFailed',
    )
  }
  return value
}

/** `X-Amzn-Bedrock-AgentCore-Runtime-User-Id`: the actor of the conversation's memory. */
export function userIdOf(request: FastifyRequest): string | undefined {
  const raw = request.headers[runtimeUserHeader]
  const value = Array.isArray(raw) ? raw[0] : raw
  if (value === undefined || value === '') return undefined
  if (value.length > 256) throw awsValidation('runtimeUserId must be at most 256 characters', 'runtimeUserId', 'FieldValidationFailed')
  return value
}

/** The payload's prompt: the runtime contract's `{"prompt": ...}` or `{"input": {"prompt": ...}}`. */
function promptOf(body: unknown): string {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.alloc(0)
  const expected = 'send the payload as JSON {"prompt": "..."}'
  if (bytes.length === 0) throw awsValidation(`the payload is empty; ${expected}`, 'payload')
  let json: unknown
  try {
    json = parseJsonBody(bytes.toString('utf8'))
  } catch (e) {
    throw awsValidation(`the payload is not valid JSON (${toCodeboxError(e).message}); ${expected}`, 'payload')
  }
  const parsed = invocationRequestSchema.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw awsValidation(`payload.${issue.path.map(String).join('.') || '(root)'}: ${issue.message}; ${expected}`, 'payload')
  }
  const prompt = parsed.data.prompt ?? parsed.data.input?.prompt
  if (!prompt) throw awsValidation(`the payload has no prompt; ${expected} (or {"input": {"prompt": "..."}})`, 'payload')
  return prompt
}
