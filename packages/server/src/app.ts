/**
 * The HTTP application: Fastify with codebox's body parsing, request ids, authentication, error
 * shape and metrics, and every route of the native API. Built from its parts (no listening, no
 * process state), so tests run it in-process with the fake driver.
 */
import { randomBytes } from 'node:crypto'
import websocket from '@fastify/websocket'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { CodeboxError } from '@codebox/core'
import { gatewayRelayKey, type SessionManager } from '@codebox/sandbox'
import { loadAgent, type Agent } from '@codebox/agent'
import { agentCoreRoutes, isAwsPath } from './agentcore/index.ts'
import { sendAwsError } from './agentcore/errors.ts'
import { a2aRoutes } from './apis/a2a/index.ts'
import { sendE2bError } from './apis/e2b/errors.ts'
import { e2bRewriteUrl, e2bRoutes, isE2bControlRequest, isE2bSandboxTraffic } from './apis/e2b/index.ts'
import { runtimeRoutes } from './apis/runtime/index.ts'
import type { ServerConfig } from './config.ts'
import { Authenticator } from './http/auth.ts'
import { parseJsonBody, readBody } from './http/body.ts'
import { clientErrorHandler, sendError } from './http/errors.ts'
import { agentApiHandler, agentCaller } from './http/agent-api.ts'
import { isGatewayRelayUrl, serveGatewayRelay } from './http/gateway-relay.ts'
import { HostCheck } from './http/host-check.ts'
import { RouteRegistry } from './http/route.ts'
import { Metrics } from './metrics.ts'
import { fileRoutes } from './routes/files.ts'
import { auditRoutes, interpreterRoutes } from './routes/interpreters.ts'
import { mcpRoutes } from './routes/mcp.ts'
import { runtimeRegistryRoutes } from './routes/runtimes.ts'
import { agentRoutes } from './routes/agent.ts'
import { opsRoutes } from './routes/ops.ts'
import { sessionRoutes } from './routes/sessions.ts'
import { webRoutes } from './routes/web.ts'
import { wsRoutes } from './routes/ws.ts'
import { AgentService } from './services/agent.ts'
import { ModelGateway, type GatewayCredential, type GatewayProvider } from './services/gateway.ts'
import type { AgentDoor } from './services/agent-door.ts'
import { RuntimeService } from './services/runtimes.ts'
import { RuntimeLauncher } from './services/runtime-launcher.ts'
import { RuntimeLogs } from './services/runtime-logs.ts'
import { StoredRuntimeSessions } from './services/runtime-replicas.ts'
import { RuntimeSessions, type HostedRuntimes } from './services/runtime-sessions.ts'
import { SessionService } from './services/sessions.ts'
import { readSealingKey, type StoreApi } from './store/index.ts'

export interface AppOptions {
  config: ServerConfig
  engine: SessionManager
  store: StoreApi
  /** Whether the listening address is loopback only (open mode is allowed only then). Default true. */
  loopbackOnly?: boolean
  /** Replaces the agent service behind every agent door (`/invocations`, `/ws`, `/v1/agent`): for tests of a door alone. */
  agentDoor?: AgentDoor
  /** The model chain and loop behind the agent service; default `loadAgent(config.agent.options)`. Tests inject one. */
  agent?: Agent
  /**
   * The model gateway the engine's egress listeners hand `http://codebox-gateway/` requests to
   * (its usage goes into /metrics). Default: one from `config.gateway`, reached by nothing (the
   * engine must be built with its handler; serve.ts does).
   */
  gateway?: ModelGateway
  /**
   * The key of the gateway relay's internal route (gatewayRelayKey of the sealing key the cluster's
   * egress proxies share). Default: derived from a PostgreSQL store's sealing key; none (the route
   * refuses everything) with SQLite.
   */
  gatewayRelayKey?: Buffer
  /** A pino logger instance, or options; default JSON logs at config.logLevel to stdout. */
  logger?: FastifyBaseLogger
  version?: string
}

export interface App {
  app: FastifyInstance
  sessions: SessionService
  /** The codebox agent service (conversations, their code sessions, memory, quotas): what every agent door calls. */
  agent: AgentService
  metrics: Metrics
  registry: RouteRegistry
  /** The model gateway: usage per session (`gateway.usage(sessionId)`) and per runtime. */
  gateway: ModelGateway
  /** The registry of hosted agent runtimes (deploys, versions, bundles, secrets). */
  runtimes: RuntimeService
  /** Hosted agents' runtime sessions (one sandbox each) and their logs. */
  hosted: HostedRuntimes
  /** Serves again the runtime sessions whose sandboxes `SessionService.adoptPrevious` re-adopted (serve.ts, at start-up). */
  restoreHosted(adopted: Awaited<ReturnType<SessionService['adoptPrevious']>>['hosted']): ReturnType<RuntimeSessions['restore']>
}

const requestIdPattern = /^[\w.:-]{1,64}$/

export async function buildApp(options: AppOptions): Promise<App> {
  const { config, engine, store } = options
  const version = options.version ?? '0.1.0'
  const app = Fastify({
    ...(options.logger ? { loggerInstance: options.logger } : { logger: { level: config.logLevel } }),
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && requestIdPattern.test(given) ? given : `req_${randomBytes(8).toString('hex')}`
    },
    bodyLimit: config.maxBodyBytes,
    routerOptions: { maxParamLength: 5000 },
    // E2B sandbox traffic (headers E2b-Sandbox-Id and -Port) goes to its internal prefix (apis/e2b).
    rewriteUrl: e2bRewriteUrl,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    forceCloseConnections: true,
    return503OnClosing: true,
    clientErrorHandler,
    // A URL that is not valid percent-encoding is refused before routing: in the shape of the API it was meant for.
    frameworkErrors: (error, request, reply) => {
      void reply.header('x-request-id', request.id)
      void (isAwsPath(request.url) ? sendAwsError(request, reply, error) : sendError(request, reply, error))
    },
    keepAliveTimeout: 72_000,
    // Backstop for a whole request to arrive (bodies are also cut off after CODEBOX_BODY_IDLE_TIMEOUT_MS of silence).
    requestTimeout: 15 * 60_000,
  })
  let sessions: SessionService | undefined
  let runtimeSessions: RuntimeSessions | undefined
  let runtimes: RuntimeService | undefined
  const gateway = options.gateway ?? new ModelGateway({ config: config.gateway })
  const relayKey = options.gatewayRelayKey ?? (config.store.kind === 'postgres' ? gatewayRelayKey(readSealingKey(config.store.sealingKey)) : undefined)
  // A runtime's secrets (`codebox runtimes secrets set`) replace the operator's key for its own
  // agents' model calls; they are added here, on the host, and never reach the sandbox.
  gateway.useCredentials(async (identity, provider) => runtimeCredentials(await runtimes?.secretsOf(identity.tag), provider))
  const metrics = new Metrics({
    gatewayUsage: () => gateway.totals(),
    runtimeSessions: () => {
      const byRuntime = new Map<string, number>()
      for (const s of runtimeSessions?.counted() ?? []) byRuntime.set(s.runtimeId, (byRuntime.get(s.runtimeId) ?? 0) + 1)
      return byRuntime
    },
    liveSessions: () => sessions?.engineStats().live ?? 0,
    startingSessions: () => sessions?.starting ?? 0,
    warmSandboxes: () => sessions?.engineStats().warm ?? 0,
    egressRequests: () => sessions?.engineStats().egress ?? { allowed: 0, denied: 0 },
  })
  sessions = new SessionService({
    engine,
    store,
    quotas: config.quotas,
    metrics,
    log: app.log,
    replicaId: config.replicaId,
    sharedStore: config.store.kind === 'postgres',
  })
  const agent = new AgentService({
    agent: options.agent ?? (await loadAgent(config.agent.options)),
    sessions,
    conversations: store.conversations,
    tenants: store.tenants,
    ...(store.rates ? { rates: store.rates } : {}),
    metrics,
    settings: {
      idleTimeoutSeconds: config.agent.idleTimeoutSeconds,
      maxLifetimeSeconds: config.agent.maxLifetimeSeconds,
      memoryDays: config.agent.memoryDays,
      turnsPerMinute: config.quotas.agentTurnsPerMinute,
    },
    log: app.log,
  })
  const sessionService = sessions
  // A hosted agent reaches codebox's code interpreter through the same gateway, as its runtime's tenant.
  gateway.useLocalApis(agentApiHandler(app, { hostedOwner: (sessionId) => sessionService.hostedOwner(sessionId) }))
  runtimes = new RuntimeService({
    store,
    stateDir: config.engine.stateDir,
    maxBundleBytes: config.maxBundleBytes,
    checkLimits: (limits) => sessionService.checkLimits(limits),
    audit: (caller, entry) => sessionService.audit(caller, entry),
    beforeDelete: async (tenant, runtimeId) => {
      await runtimeSessions?.stopRuntime(tenant, runtimeId)
      await runtimeLogs.forget(tenant, runtimeId)
    },
  })
  const runtimeLogs = new RuntimeLogs({
    store: store.runtimeLogs,
    maxBytesPerSession: config.runtimeLogs.maxBytesPerSession,
    maxSessionsPerRuntime: config.runtimeLogs.maxSessionsPerRuntime,
    retentionMs: config.runtimeLogs.retentionSeconds * 1000,
    onError: (err) => app.log.error({ err }, 'could not store what a hosted agent printed'),
    // Replicas sharing runtime sessions: one at a time collects an agent's output.
    ...((await sessions.hostedShared()) ? { collector: config.replicaId, leaseMs: config.runtimeLogs.leaseSeconds * 1000 } : {}),
  })
  const launcher = new RuntimeLauncher({ runtimes, sessions, logs: runtimeLogs })
  runtimeSessions = new RuntimeSessions({
    launcher,
    // Replicas on one store and a shared driver serve each other's runtime sessions (services/runtime-replicas.ts).
    ...((await sessions.hostedShared()) ? { store: new StoredRuntimeSessions({ store, sessions, launcher }) } : {}),
    onEnd: (info, reason) => {
      metrics.runtimeSessionEnds.inc({ runtime: info.runtimeId, reason })
      app.log.info({ runtimeId: info.runtimeId, runtimeSessionId: info.runtimeSessionId, sessionId: info.sessionId, reason }, 'a runtime session ended')
      void sessionService
        .audit(
          { tenant: info.tenant },
          {
            action: 'runtimeSessionEnded',
            sessionId: info.sessionId,
            outcome: 'ok',
            durationMs: 0,
            detail: `${info.runtimeId} ${info.runtimeSessionId} ${reason}`,
          },
        )
        .catch((err: unknown) => app.log.error({ err }, 'could not record the end of a runtime session'))
    },
  })
  const hosted: HostedRuntimes = {
    runtimes,
    sessions: runtimeSessions,
    logs: runtimeLogs,
    metrics,
    audit: (caller, entry) => sessionService.audit(caller, entry),
  }
  app.addHook('onClose', async () => runtimes.close())
  // Hosted agents end before the engine closes (their sandboxes are sessions of it).
  app.addHook('onClose', async () => runtimeSessions?.close())
  // Before the engine closes: running turns are stored as canceled and conversations' code sessions stopped.
  app.addHook('onClose', () => agent.close())
  const auth = new Authenticator(store, { loopbackOnly: options.loopbackOnly ?? true })
  const registry = new RouteRegistry()

  // Only JSON bodies (and raw uploads in the file routes): any other type is a 400, not a parser that could stall.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/json', async (request: { raw: import('node:http').IncomingMessage }) => {
    const body = await readBody(request.raw, { maxBytes: config.maxBodyBytes, idleTimeoutMs: config.bodyIdleTimeoutMs })
    return parseJsonBody(body.toString('utf8'))
  })
  app.decorateRequest('caller', null as never)
  const hostCheck = new HostCheck({ boundHost: config.host, allowedHosts: config.allowedHosts, allowedOrigins: config.allowedOrigins })
  app.addHook('onRequest', async (request, reply) => {
    void reply.header('x-request-id', request.id)
    // A sandbox pod's model gateway request, relayed and signed by the cluster's egress proxy: its signature is all that admits it.
    if (isGatewayRelayUrl(request.raw.url)) return serveGatewayRelay(request, reply, { key: relayKey, handler: gateway.handler })
    // A hosted agent's call through its gateway (http/agent-api.ts): its caller is known, it came from no browser.
    const fromAgent = agentCaller(request.raw)
    if (fromAgent) {
      request.caller = fromAgent
      return
    }
    // Before any route and before authentication: a browser page must not reach an open server.
    try {
      hostCheck.check(request.headers)
    } catch (e) {
      // A refused WebSocket upgrade owns its socket: it is closed once the 403 is out.
      if (request.headers.upgrade !== undefined) {
        void reply.header('connection', 'close')
        reply.raw.once('finish', () => request.raw.socket.end())
      }
      throw e
    }
    // E2B sandbox traffic carries the sandbox's access token instead (apis/e2b/auth.ts).
    if (request.routeOptions.config?.auth !== false && request.routeOptions.url !== undefined && !isE2bSandboxTraffic(request.raw)) {
      request.caller = await auth.authenticate(request.headers.authorization)
    }
  })
  app.addHook('onResponse', async (request, reply) => {
    const routeUrl = request.routeOptions.url ?? 'unmatched'
    metrics.httpRequests.inc({ method: request.method, route: routeUrl, status: String(reply.statusCode) })
    metrics.httpDuration.observe({ method: request.method, route: routeUrl }, reply.elapsedTime / 1000)
  })
  app.setErrorHandler((error, request, reply) => sendError(request, reply, error))
  app.setNotFoundHandler((request, reply) => {
    const e = new CodeboxError('NotFound', `no route ${request.method} ${request.url.split('?')[0]}; the API reference is at /docs`)
    // An E2B SDK reads `message` at the top level (docs/e2b.md lists what codebox serves of E2B's API).
    return isE2bControlRequest(request.raw) ? sendE2bError(request, reply, e) : sendError(request, reply, e)
  })

  await app.register(websocket, { options: { maxPayload: 140_000_000 } })
  sessionRoutes(app, registry, sessions)
  await fileRoutes(app, registry, sessions, config)
  interpreterRoutes(app, registry, store, sessions)
  auditRoutes(app, registry, store)
  await runtimeRegistryRoutes(app, registry, { runtimes, hosted, bodyIdleTimeoutMs: config.bodyIdleTimeoutMs, maxPayloadBytes: config.maxBodyBytes })
  const agentDoor = options.agentDoor ?? agent
  opsRoutes(app, registry, sessions, metrics, version, { agentBusy: () => agentDoor.busy })
  agentRoutes(app, registry, agentDoor)
  await runtimeRoutes(app, registry, { agent: agentDoor, auth })
  webRoutes(app, { webDir: config.webDir, version })
  await app.register(async (scope) => wsRoutes(scope, auth, sessions))
  mcpRoutes(app, sessions, { version, idleMs: config.mcpIdleMs })
  await agentCoreRoutes(app, {
    store,
    sessions,
    body: { maxBytes: config.maxBodyBytes, idleTimeoutMs: config.bodyIdleTimeoutMs },
    holdMs: config.agentCoreHoldMs,
    loopbackOnly: options.loopbackOnly ?? true,
    agent: agentDoor,
    runtimes,
    hosted,
  })
  await e2bRoutes(app, { store, sessions, auth, maxUploadBytes: config.maxUploadBytes, bodyIdleTimeoutMs: config.bodyIdleTimeoutMs })
  await a2aRoutes(app, { agent: agentDoor, auth, body: { maxBytes: config.maxBodyBytes, idleTimeoutMs: config.bodyIdleTimeoutMs }, version })
  const restoreHosted: App['restoreHosted'] = (adopted) =>
    runtimeSessions.restore(
      adopted.map(({ record, session }) => ({
        key: { tenant: record.tenant, runtimeId: record.runtimeId, runtimeSessionId: record.hosted.runtimeSessionId },
        startedAt: new Date(record.createdAt),
        lastActivity: new Date(record.lastUpdatedAt),
        reattach: () =>
          launcher.reattach({ tenant: record.tenant, runtimeId: record.runtimeId, runtimeSessionId: record.hosted.runtimeSessionId }, session, record.hosted),
        abandon: async () => sessionService.stopHosted(session, 'unhealthy'),
      })),
    )
  return { app, sessions, agent, metrics, registry, gateway, runtimes, hosted, restoreHosted }
}

/** The gateway credential a runtime's secrets hold for `provider`, if any. */
function runtimeCredentials(secrets: Record<string, string> | undefined, provider: GatewayProvider): GatewayCredential | undefined {
  if (!secrets) return undefined
  if (provider === 'anthropic' && secrets.ANTHROPIC_API_KEY) return { apiKey: secrets.ANTHROPIC_API_KEY }
  if (provider === 'openai' && secrets.OPENAI_API_KEY) return { apiKey: secrets.OPENAI_API_KEY }
  if (provider === 'bedrock' && secrets.AWS_ACCESS_KEY_ID && secrets.AWS_SECRET_ACCESS_KEY) {
    return {
      aws: {
        accessKeyId: secrets.AWS_ACCESS_KEY_ID,
        secretAccessKey: secrets.AWS_SECRET_ACCESS_KEY,
        ...(secrets.AWS_SESSION_TOKEN ? { sessionToken: secrets.AWS_SESSION_TOKEN } : {}),
      },
    }
  }
  return undefined
}
