/**
 * codebox errors in AWS's form: the exception name (`x-amzn-errortype` and the event stream's
 * `:exception-type`), the AWS status code and a `{message}` body (plus `reason` and `fieldList`
 * for validation), so the AWS SDKs raise the typed exceptions they document.
 */
import { CodeboxError, type ErrorCode } from '@codebox/core'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { endUnreadBody, toCodeboxError } from '../http/errors.ts'

export type AwsExceptionName =
  | 'ValidationException'
  | 'AccessDeniedException'
  | 'ResourceNotFoundException'
  | 'ConflictException'
  | 'ThrottlingException'
  | 'ServiceQuotaExceededException'
  | 'InternalServerException'
  | 'ServiceUnavailableException'
  | 'RuntimeClientError'

const statusOf: Record<AwsExceptionName, number> = {
  ValidationException: 400,
  AccessDeniedException: 403,
  ResourceNotFoundException: 404,
  ConflictException: 409,
  ThrottlingException: 429,
  ServiceQuotaExceededException: 402,
  InternalServerException: 500,
  // Not in the service model: the SDKs raise it as a generic service error and retry it (a 503), as they should.
  ServiceUnavailableException: 503,
  // What AWS answers when the agent behind InvokeAgentRuntime fails (the runtime's own error, not the service's).
  RuntimeClientError: 424,
}

const byCode: Record<ErrorCode, AwsExceptionName> = {
  ValidationError: 'ValidationException',
  LimitExceeded: 'ValidationException',
  RequestTimeout: 'ValidationException',
  Unauthorized: 'AccessDeniedException',
  Forbidden: 'AccessDeniedException',
  NotFound: 'ResourceNotFoundException',
  // AWS answers a call on a stopped session as a resource it cannot find.
  SessionTerminated: 'ResourceNotFoundException',
  Conflict: 'ConflictException',
  Canceled: 'ConflictException',
  RateLimited: 'ThrottlingException',
  QuotaExceeded: 'ServiceQuotaExceededException',
  Timeout: 'InternalServerException',
  SandboxFailure: 'InternalServerException',
  // A missing image, a busy or full store: a 503 the client may retry, never a 500.
  Unavailable: 'ServiceUnavailableException',
  // Not a 5xx: botocore would retry it blindly against a machine that has no room.
  HostCapacity: 'ServiceQuotaExceededException',
  // Only the agent (InvokeAgentRuntime) raises these: a failure of the runtime, not a retryable 500.
  ModelNotConfigured: 'RuntimeClientError',
  ModelUnavailable: 'RuntimeClientError',
  Internal: 'InternalServerException',
}

export interface AwsError {
  name: AwsExceptionName
  status: number
  body: { message: string; reason?: string; fieldList?: { name: string; message: string }[] }
}

/** The AWS form of any error a handler threw. */
export function toAwsError(e: unknown): { error: AwsError; source: CodeboxError } {
  const err = toCodeboxError(e)
  const name = (err.details.aws as AwsExceptionName | undefined) ?? byCode[err.code] ?? 'InternalServerException'
  const body: AwsError['body'] = { message: err.message }
  if (name === 'ValidationException') {
    const field = typeof err.details.field === 'string' ? err.details.field : undefined
    body.reason = typeof err.details.reason === 'string' ? err.details.reason : field ? 'FieldValidationFailed' : 'CannotParse'
    if (field) body.fieldList = [{ name: field, message: err.message }]
  }
  return { error: { name, status: statusOf[name], body }, source: err }
}

/** The member name of an exception in CodeInterpreterStreamOutput: `validationException`, ... */
export const streamMemberOf = (name: AwsExceptionName): string => name[0]!.toLowerCase() + name.slice(1)

/** Sends an error as AWS does: status, `x-amzn-errortype`, JSON `{message}`. */
export function sendAwsError(request: FastifyRequest, reply: FastifyReply, e: unknown): FastifyReply {
  const { error, source } = toAwsError(e)
  if (error.status >= 500) request.log.error({ err: e }, 'AgentCore request failed')
  else request.log.info({ code: source.code, exception: error.name, reason: source.message }, 'AgentCore request rejected')
  const retry = source.details.retryAfterSeconds
  if (typeof retry === 'number') void reply.header('retry-after', String(retry))
  endUnreadBody(request, reply, source.code)
  return reply.code(error.status).header('x-amzn-errortype', error.name).header('x-amzn-requestid', request.id).type('application/json').send(error.body)
}

/** A ValidationException with AWS's reason; `field` fills fieldList. */
export function awsValidation(message: string, field?: string, reason?: string): CodeboxError {
  return new CodeboxError('ValidationError', message, { details: { ...(field ? { field } : {}), ...(reason ? { reason } : {}) } })
}
