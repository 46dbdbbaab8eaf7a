/**
 * @codebox/sdk: the TypeScript client of codebox's native HTTP API v1. Browser-safe (fetch,
 * streams, TextDecoder, AbortSignal, Blob only); Node-only helpers are at `@codebox/sdk/node`.
 */
export { CodeInterpreter, codeSession, type CodeInterpreterOptions, type ExecuteCodeOptions, type WriteFileInput } from './code-interpreter.ts'
export { CodeboxClient, type AuditApi, type InterpretersApi, type SessionsApi } from './client.ts'
export type { RuntimesApi, RuntimeList, RuntimeVersionList, RuntimeSecretList, RuntimeInvokeOptions, RuntimeInvocation } from './runtimes.ts'
export {
  AgentClient,
  sessionIdHeader,
  userIdHeader,
  type AskOptions,
  type TurnOptions,
  type ConversationHistory,
  type ConversationList,
  type GenerateOptions,
  type InvokeOptions,
  type ListConversationsOptions,
} from './agent.ts'
export { defaultBaseUrl, defaultMaxRetries, defaultTimeoutMs, type CallOptions, type ClientOptions } from './http.ts'
export type { AuditList, InterpreterList, ListAuditOptions, ListSessionsOptions, PingResult, StartSessionOptions } from './routes.ts'
export type { DeleteFileOptions, FileDownload, FileEntryList, FileWriteResult, ListFileEntriesOptions, UploadData } from './files.ts'
export { invokeGraceMs } from './invoke.ts'
export { parseSse, SseParser, type SseEvent } from './sse.ts'
export {
  ConflictError,
  InternalError,
  LimitExceededError,
  NotFoundError,
  QuotaExceededError,
  RequestTimeoutError,
  RateLimitedError,
  SandboxFailureError,
  SessionTerminatedError,
  TimeoutError,
  UnauthorizedError,
  UnavailableError,
  HostCapacityError,
  ModelNotConfiguredError,
  ModelUnavailableError,
  CanceledError,
  ForbiddenError,
  ValidationError,
  type RateLimitedErrorOptions,
} from './errors.ts'
export { CodeboxError, isCodeboxError } from '@codebox/core'
export type {
  AgentEvent,
  AgentStatus,
  AgentTurn,
  Conversation,
  GenerateResponse,
  InvocationResponse,
  ModelSkip,
  AuditEntry,
  ContentBlock,
  CreateInterpreterRequest,
  ErrorCode,
  ExecutionEvent,
  FileEntry,
  Interpreter,
  Language,
  MimeBundle,
  SessionInfo,
  SessionList,
  StartSessionRequest,
  StructuredContent,
  ToolArguments,
  ToolName,
  ToolResult,
} from '@codebox/core'
