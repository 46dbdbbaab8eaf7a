/**
 * Server configuration: read once from the environment (and `codebox serve` flags), validated,
 * frozen, passed down. No other server module reads process.env. docs/config.md lists every
 * variable.
 */
import os from 'node:os'
import path from 'node:path'
import { agentOptionsFromEnv, type AgentOptions } from '@codebox/agent'
import { validationError } from '@codebox/core'
import { intVar, loadEngineConfig, type EngineConfig } from '@codebox/sandbox'
import { normalizeOrigin } from './http/host-check.ts'
import type { GatewayConfig } from './services/gateway.ts'
import { storeConfigFromEnv, type StoreConfig } from './store/open.ts'

export interface QuotaDefaults {
  /** `CODEBOX_TENANT_MAX_SESSIONS`: sessions a tenant may have running at once. Default 50. */
  maxSessions: number
  /** `CODEBOX_TENANT_STARTS_PER_MINUTE`: session starts per tenant per minute. Default 120. */
  startsPerMinute: number
  /** `CODEBOX_TENANT_INVOKES_PER_SECOND`: invocations per tenant per second (bursts of twice that). Default 200. */
  invokesPerSecond: number
  /** `CODEBOX_TENANT_AGENT_TURNS_PER_MINUTE`: agent turns (each spends the operator's model key) per tenant per minute. Default 60. */
  agentTurnsPerMinute: number
}

/** The codebox agent: its models and limits (the agent package's variables) and the runtime session's. */
export interface AgentConfig {
  /** `CODEBOX_AGENT_MODELS` and the other `CODEBOX_AGENT_*` model settings, as the agent package reads them (agentOptionsFromEnv). */
  options: AgentOptions
  /** `CODEBOX_AGENT_IDLE_TIMEOUT_SECONDS`: a conversation's code session without a call for this long is stopped (memory kept). Default 900. */
  idleTimeoutSeconds: number
  /** `CODEBOX_AGENT_MAX_LIFETIME_SECONDS`: a conversation's code session is stopped this long after it started (memory kept). Default 28800 (8 h). */
  maxLifetimeSeconds: number
  /** `CODEBOX_AGENT_MEMORY_DAYS`: a conversation is forgotten this many days after its last turn (1-365). Default 30. */
  memoryDays: number
}

/** Hosted agents' logs in the store (services/runtime-logs.ts). */
export interface RuntimeLogConfig {
  /** `CODEBOX_RUNTIME_LOG_RETENTION_SECONDS`: an ended runtime session's log is kept this long. Default 86400 (24 h). */
  retentionSeconds: number
  /** `CODEBOX_RUNTIME_LOG_MAX_BYTES`: the last bytes kept of each runtime session's output (earlier ones are counted as dropped). Default 1 MiB. */
  maxBytesPerSession: number
  /** `CODEBOX_RUNTIME_LOG_MAX_SESSIONS`: runtime session logs kept per runtime; the oldest ended ones go first. Default 200. */
  maxSessionsPerRuntime: number
  /** `CODEBOX_RUNTIME_LOG_LEASE_SECONDS`: with replicas sharing runtime sessions, how long the replica collecting an agent's output may go without renewing its lease before another takes the collection over. Default 15. */
  leaseSeconds: number
}

export interface ServerConfig {
  /** `CODEBOX_HOST`: address to listen on. Default 127.0.0.1. A non-loopback address needs API keys. */
  host: string
  /** `CODEBOX_PORT`: default 8080; 0 picks a free port. */
  port: number
  /**
   * `CODEBOX_DB`: the store. A file path is the embedded SQLite store (default
   * `<state dir>/codebox.db`); a `postgres://` or `postgresql://` URI is PostgreSQL, shared by many
   * replicas, with the sealing key from `CODEBOX_SEALING_KEY` or `CODEBOX_SEALING_KEY_FILE`.
   */
  store: StoreConfig
  /**
   * `CODEBOX_REPLICA_ID`: this server's identity among the replicas sharing a PostgreSQL store,
   * recorded on every session it starts; at start-up a replica re-adopts (or ends) only its own
   * sessions. Default `<host name>:<state dir>`, the same across restarts of one server and
   * different for two servers on one machine with their own state dirs. 1-200 printable characters.
   */
  replicaId: string
  /** `CODEBOX_MAX_UPLOAD_BYTES`: largest file upload. Default 100 MB. */
  maxUploadBytes: number
  /** `CODEBOX_RUNTIME_MAX_BUNDLE_BYTES`: largest runtime code bundle (gzipped tar) upload. Default 250 MiB; it may unpack to 4 times that. */
  maxBundleBytes: number
  runtimeLogs: RuntimeLogConfig
  /** `CODEBOX_MAX_BODY_BYTES`: largest JSON body. Default 140 MB (a 100 MB file as base64 in writeFiles). */
  maxBodyBytes: number
  /** `CODEBOX_BODY_IDLE_TIMEOUT_MS`: a request body that sends nothing for this long gets 408. Default 30 s. */
  bodyIdleTimeoutMs: number
  /**
   * `CODEBOX_AGENTCORE_HOLD_MS`: how long an AgentCore invoke's response headers wait for the
   * result before they are sent anyway. Default 20 s, under botocore's 60 s read timeout.
   */
  agentCoreHoldMs: number
  /** `CODEBOX_MCP_IDLE_MS`: an MCP connection at /mcp without requests for this long is closed and its session stopped. Default 15 min. */
  mcpIdleMs: number
  /**
   * `CODEBOX_ALLOWED_HOSTS`: comma list of further Host names the server answers to (loopback
   * names and the bound address always are): `name` (any port), `name:port` or `*.domain`.
   */
  allowedHosts: readonly string[]
  /** `CODEBOX_ALLOWED_ORIGINS`: comma list of origins (`https://ide.example.com`) whose pages may call the server, besides its own. */
  allowedOrigins: readonly string[]
  /** `CODEBOX_LOG_LEVEL`: fatal, error, warn, info (default), debug, trace or silent. */
  logLevel: string
  /**
   * `CODEBOX_WEB_DIR`: the built web IDE (Vite's output: index.html and app/) served at `/`.
   * Default packages/web/dist of this checkout; when it has no index.html, `/` shows the API links.
   */
  webDir: string
  quotas: QuotaDefaults
  agent: AgentConfig
  /** The model gateway sandboxes reach at http://codebox-gateway/ (docs/config.md, "Model gateway"). */
  gateway: GatewayConfig
  engine: EngineConfig
}

/** Where `npm start` builds the web IDE: packages/web/dist beside this package. */
const defaultWebDir = path.resolve(import.meta.dirname, '../../web/dist')

const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

export function loadServerConfig(
  env: Record<string, string | undefined> = {},
  overrides: Partial<Pick<ServerConfig, 'host' | 'port'>> = {},
  hostname: string = os.hostname(),
): Readonly<ServerConfig> {
  const engine = loadEngineConfig(env)
  const logLevel = env.CODEBOX_LOG_LEVEL ?? 'info'
  if (!logLevels.includes(logLevel)) throw validationError('CODEBOX_LOG_LEVEL', `must be one of ${logLevels.join(', ')}, got ${JSON.stringify(logLevel)}`)
  const host = overrides.host ?? env.CODEBOX_HOST ?? '127.0.0.1'
  if (!/^[0-9a-zA-Z.:_-]+$/.test(host)) throw validationError('CODEBOX_HOST', `is not a host name or address: ${JSON.stringify(host)}`)
  return Object.freeze({
    host,
    port: overrides.port ?? intVar(env, 'CODEBOX_PORT', 8080, 0, 65535),
    store: Object.freeze(storeConfigFromEnv(env, engine.stateDir)),
    replicaId: replicaIdVar(env.CODEBOX_REPLICA_ID, `${hostname}:${engine.stateDir}`),
    maxUploadBytes: intVar(env, 'CODEBOX_MAX_UPLOAD_BYTES', 100_000_000, 1, 2 ** 40),
    maxBundleBytes: intVar(env, 'CODEBOX_RUNTIME_MAX_BUNDLE_BYTES', 250 * 1024 * 1024, 1024, 2 ** 40),
    runtimeLogs: Object.freeze({
      retentionSeconds: intVar(env, 'CODEBOX_RUNTIME_LOG_RETENTION_SECONDS', 86_400, 60, 365 * 86_400),
      maxBytesPerSession: intVar(env, 'CODEBOX_RUNTIME_LOG_MAX_BYTES', 1024 * 1024, 1024, 64 * 1024 * 1024),
      maxSessionsPerRuntime: intVar(env, 'CODEBOX_RUNTIME_LOG_MAX_SESSIONS', 200, 1, 100_000),
      leaseSeconds: intVar(env, 'CODEBOX_RUNTIME_LOG_LEASE_SECONDS', 15, 1, 3600),
    }),
    maxBodyBytes: intVar(env, 'CODEBOX_MAX_BODY_BYTES', 140_000_000, 1024, 2 ** 31),
    bodyIdleTimeoutMs: intVar(env, 'CODEBOX_BODY_IDLE_TIMEOUT_MS', 30_000, 100, 3_600_000),
    agentCoreHoldMs: intVar(env, 'CODEBOX_AGENTCORE_HOLD_MS', 20_000, 0, 3_600_000),
    mcpIdleMs: intVar(env, 'CODEBOX_MCP_IDLE_MS', 15 * 60_000, 1000, 7 * 24 * 3_600_000),
    allowedHosts: Object.freeze(listVar(env, 'CODEBOX_ALLOWED_HOSTS').map((h) => checkHostEntry(h))),
    allowedOrigins: Object.freeze(listVar(env, 'CODEBOX_ALLOWED_ORIGINS').map((o) => checkOriginEntry(o))),
    logLevel,
    webDir: path.resolve(env.CODEBOX_WEB_DIR || defaultWebDir),
    quotas: Object.freeze({
      maxSessions: intVar(env, 'CODEBOX_TENANT_MAX_SESSIONS', 50, 1, 100_000),
      startsPerMinute: intVar(env, 'CODEBOX_TENANT_STARTS_PER_MINUTE', 120, 1, 1_000_000),
      invokesPerSecond: intVar(env, 'CODEBOX_TENANT_INVOKES_PER_SECOND', 200, 1, 1_000_000),
      agentTurnsPerMinute: intVar(env, 'CODEBOX_TENANT_AGENT_TURNS_PER_MINUTE', 60, 1, 1_000_000),
    }),
    agent: Object.freeze({
      options: agentOptionsFromEnv(env),
      idleTimeoutSeconds: intVar(env, 'CODEBOX_AGENT_IDLE_TIMEOUT_SECONDS', 900, 1, 28_800),
      maxLifetimeSeconds: intVar(env, 'CODEBOX_AGENT_MAX_LIFETIME_SECONDS', 28_800, 1, 28_800),
      memoryDays: intVar(env, 'CODEBOX_AGENT_MEMORY_DAYS', 30, 1, 365),
    }),
    gateway: loadGatewayConfig(env),
    engine,
  })
}

/** The model gateway's upstreams and the operator's credentials for them. */
function loadGatewayConfig(env: Record<string, string | undefined>): GatewayConfig {
  // Half a pair is no credentials (the gateway's 503 names both variables); the agent's AWS SDK may have other sources.
  const accessKeyId = env.AWS_ACCESS_KEY_ID || undefined
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY || undefined
  const region = env.AWS_REGION || env.AWS_DEFAULT_REGION || undefined
  if (region !== undefined && !/^[a-z]{2}(-[a-z]+)+-\d{1,2}$/.test(region)) {
    throw validationError('AWS_REGION', `is not an AWS region such as us-east-1: ${JSON.stringify(region.slice(0, 64))}`)
  }
  const bedrockUrl = env.CODEBOX_GATEWAY_BEDROCK_URL ? upstreamUrl(env, 'CODEBOX_GATEWAY_BEDROCK_URL', '') : undefined
  return Object.freeze({
    anthropic: Object.freeze({
      url: upstreamUrl(env, 'CODEBOX_GATEWAY_ANTHROPIC_URL', 'https://api.anthropic.com'),
      ...(env.ANTHROPIC_API_KEY ? { apiKey: env.ANTHROPIC_API_KEY } : {}),
    }),
    openai: Object.freeze({
      url: upstreamUrl(env, 'CODEBOX_GATEWAY_OPENAI_URL', 'https://api.openai.com'),
      ...(env.OPENAI_API_KEY ? { apiKey: env.OPENAI_API_KEY } : {}),
    }),
    bedrock: Object.freeze({
      ...(bedrockUrl ? { url: bedrockUrl } : {}),
      ...(region ? { region } : {}),
      ...(accessKeyId && secretAccessKey
        ? { credentials: Object.freeze({ accessKeyId, secretAccessKey, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) }) }
        : {}),
    }),
    maxBodyBytes: intVar(env, 'CODEBOX_GATEWAY_MAX_BODY_BYTES', 20 * 1024 * 1024, 1024, 2 ** 30),
    timeoutMs: intVar(env, 'CODEBOX_GATEWAY_TIMEOUT_MS', 600_000, 1000, 3_600_000),
  })
}

/** An http(s) base URL without credentials, query or fragment, without its trailing slash. */
function upstreamUrl(env: Record<string, string | undefined>, name: string, fallback: string): string {
  const raw = env[name] || fallback
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw validationError(name, `is not a URL: ${JSON.stringify(raw.slice(0, 200))}`)
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw validationError(name, 'must be an http:// or https:// URL')
  if (url.username || url.password || url.search || url.hash) throw validationError(name, 'must be a base URL without credentials, query or fragment')
  return `${url.origin}${url.pathname.replace(/\/$/, '')}`
}

/** CODEBOX_REPLICA_ID checked (1-200 printable characters, no leading or trailing space), or the default. */
function replicaIdVar(value: string | undefined, fallback: string): string {
  if (value === undefined || value === '') return fallback
  if (value.length > 200 || !/^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(value))
    throw validationError(
      'CODEBOX_REPLICA_ID',
      `must be 1-200 printable ASCII characters without leading or trailing spaces, got ${JSON.stringify(value.slice(0, 64))}`,
    )
  return value
}

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '::ffff:127.0.0.1'
}

const listVar = (env: Record<string, string | undefined>, name: string): string[] =>
  (env[name] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')

function checkHostEntry(entry: string): string {
  if (!/^(\*\.)?([0-9a-z_-]+\.)*[0-9a-z_-]+(:\d{1,5})?$|^\[[0-9a-f:.]+\](:\d{1,5})?$/i.test(entry)) {
    throw validationError('CODEBOX_ALLOWED_HOSTS', `${JSON.stringify(entry)} is not a host name, name:port or *.domain`)
  }
  return entry.toLowerCase()
}

function checkOriginEntry(entry: string): string {
  const origin = normalizeOrigin(entry)
  if (!origin) throw validationError('CODEBOX_ALLOWED_ORIGINS', `${JSON.stringify(entry)} is not an origin such as https://ide.example.com`)
  return origin
}
