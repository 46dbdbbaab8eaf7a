/**
 * Native API v1: hosted agent runtimes — bundle uploads (a streamed gzipped tar), deploys (a new
 * runtime or its next version), versions, rollback of the DEFAULT endpoint, deletes and secrets.
 * The built-in codebox agent is listed too, read-only.
 */
import {
  deployRuntimeRequestSchema,
  putRuntimeSecretRequestSchema,
  rollbackRuntimeRequestSchema,
  runtimeBundleSchema,
  runtimeListSchema,
  runtimeSchema,
  runtimeSecretListSchema,
  runtimeSecretNameSchema,
  runtimeSecretSchema,
  runtimeVersionListSchema,
  runtimeLogListSchema,
  runtimeSessionIdSchema,
  runtimeSessionListSchema,
  type RuntimeInfo,
  type RuntimeVersionInfo,
} from '@codebox/core'
import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { checkDeclaredLength, limitedBody } from '../http/body.ts'
import { route, type RouteRegistry } from '../http/route.ts'
import { runtimeInvokeRoute } from './runtime-invocations.ts'
import type { HostedRuntimes } from '../services/runtime-sessions.ts'
import { builtInRuntimeId, type RuntimeService } from '../services/runtimes.ts'
import type { Caller } from '../services/sessions.ts'
import type { RuntimeRecord, RuntimeSettings, RuntimeVersionRecord } from '../store/index.ts'

const idParams = z.strictObject({ runtimeId: z.string().min(1).max(2048) })
const secretParams = z.strictObject({ runtimeId: z.string().min(1).max(2048), name: runtimeSecretNameSchema })
const notFound = { 404: { description: 'NotFound: no such runtime (another tenant’s is the same)' } }

export interface RuntimeRouteOptions {
  runtimes: RuntimeService
  /** Hosted agents' runtime sessions and logs. */
  hosted: HostedRuntimes
  bodyIdleTimeoutMs: number
  /** The largest invocation payload (CODEBOX_MAX_BODY_BYTES). */
  maxPayloadBytes: number
}

const sessionParams = z.strictObject({ runtimeId: z.string().min(1).max(2048), runtimeSessionId: runtimeSessionIdSchema })
const logsQuery = z.strictObject({
  runtimeSessionId: runtimeSessionIdSchema.optional(),
  limit: z.coerce.number().int().min(1).max(100).optional().describe('At most this many logs, newest first (default 20).'),
})

export async function runtimeRegistryRoutes(app: FastifyInstance, registry: RouteRegistry, options: RuntimeRouteOptions): Promise<void> {
  const { runtimes, hosted } = options
  const listedSince = new Date().toISOString()
  const view = (caller: Caller, r: RuntimeRecord, settings?: RuntimeSettings): RuntimeInfo => ({
    agentRuntimeArn: runtimes.arn(caller, r.runtimeId),
    agentRuntimeId: r.runtimeId,
    agentRuntimeName: r.name,
    agentRuntimeVersion: String(r.defaultVersion),
    latestVersion: String(r.latestVersion),
    pinned: r.pinnedVersion !== undefined,
    builtIn: false,
    ...(r.description !== undefined ? { description: r.description } : {}),
    status: r.status,
    createdAt: r.createdAt,
    lastUpdatedAt: r.updatedAt,
    ...(settings ? { settings } : {}),
  })
  const builtIn = (caller: Caller): RuntimeInfo => ({
    agentRuntimeArn: runtimes.arn(caller, builtInRuntimeId),
    agentRuntimeId: builtInRuntimeId,
    agentRuntimeName: builtInRuntimeId,
    agentRuntimeVersion: '1',
    latestVersion: '1',
    pinned: false,
    builtIn: true,
    description: 'The built-in codebox agent (read-only)',
    status: 'READY',
    createdAt: listedSince,
    lastUpdatedAt: listedSince,
  })
  const versionView = (v: RuntimeVersionRecord): RuntimeVersionInfo => ({
    agentRuntimeVersion: String(v.version),
    createdAt: v.createdAt,
    settings: v.settings,
    bundle: { bundleId: v.bundle.bundleId, sha256: v.bundle.sha256, bytes: v.bundle.bytes },
  })

  await app.register(async (scope) => {
    // The bundle is raw bytes: the route streams the body itself instead of a parser reading it.
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined))
    route(
      scope,
      registry,
      {
        method: 'POST',
        path: '/v1/runtime-bundles',
        operationId: 'uploadRuntimeBundle',
        tag: 'Runtimes',
        summary: 'Upload a runtime code bundle (a gzipped tar, streamed)',
        description: `The body is the bundle (Content-Type application/gzip), at most ${runtimes.maxBundleBytes} bytes (CODEBOX_RUNTIME_MAX_BUNDLE_BYTES): a larger Content-Length gets 413 before any byte is read. Deploy it with POST /v1/runtimes within an hour; bundles no version uses are removed after that.`,
        body: 'binary',
        responses: {
          201: { description: 'Stored', schema: runtimeBundleSchema },
          400: { description: 'ValidationError: empty or not gzip' },
          408: { description: 'RequestTimeout: the body stalled' },
          413: { description: 'LimitExceeded' },
        },
      },
      async ({ caller, request, reply }) => {
        checkDeclaredLength(request.raw, runtimes.maxBundleBytes, 'bundle')
        const body = limitedBody(request.raw, { maxBytes: runtimes.maxBundleBytes, idleTimeoutMs: options.bodyIdleTimeoutMs }, 'bundle')
        const stored = await runtimes.uploadBundle(caller, body)
        return reply.code(201).send({ bundleId: stored.bundleId, sha256: stored.sha256, bytes: stored.bytes })
      },
    )
    runtimeInvokeRoute(scope, registry, options)
  })

  route(
    app,
    registry,
    {
      method: 'POST',
      path: '/v1/runtimes',
      operationId: 'deployRuntime',
      tag: 'Runtimes',
      summary: 'Deploy a bundle: a new runtime (version 1), or the next version of the tenant’s runtime of that name',
      description:
        'Settings not given are the previous version’s. DEFAULT moves to the new version, also after a rollback (as on AWS). The bundle is unpacked and checked first: only files, directories and links inside it; the entrypoint must be a file of it.',
      body: deployRuntimeRequestSchema,
      responses: {
        201: { description: 'Deployed', schema: runtimeSchema },
        400: { description: 'ValidationError: a setting, the bundle (hostile or not a tar) or the entrypoint' },
        413: { description: 'LimitExceeded: the bundle unpacks to too much' },
      },
    },
    async ({ body, caller, request, reply }) => {
      const { runtime, version } = await runtimes.deploy(caller, body, request.id)
      return reply.code(201).send(view(caller, runtime, version.settings))
    },
  )

  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/v1/runtimes',
      operationId: 'listRuntimes',
      tag: 'Runtimes',
      summary: 'List runtimes: the built-in codebox agent, then the tenant’s, oldest first',
      responses: { 200: { description: 'Runtimes', schema: runtimeListSchema } },
    },
    async ({ caller }) => ({ items: [builtIn(caller), ...(await runtimes.list(caller)).map((r) => view(caller, r))] }),
  )

  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/v1/runtimes/{runtimeId}',
      operationId: 'getRuntime',
      tag: 'Runtimes',
      summary: 'Get a runtime by id, name or ARN, with its DEFAULT version’s settings',
      params: idParams,
      responses: { 200: { description: 'The runtime', schema: runtimeSchema }, ...notFound },
    },
    async ({ params, caller }) => {
      if (runtimes.isBuiltIn(params.runtimeId)) return builtIn(caller)
      const { runtime, version } = await runtimes.resolve(caller, params.runtimeId)
      return view(caller, runtime, version.settings)
    },
  )

  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/v1/runtimes/{runtimeId}/versions',
      operationId: 'listRuntimeVersions',
      tag: 'Runtimes',
      summary: 'The versions of a runtime, newest first',
      params: idParams,
      responses: { 200: { description: 'Versions', schema: runtimeVersionListSchema }, ...notFound },
    },
    async ({ params, caller }) => {
      if (runtimes.isBuiltIn(params.runtimeId)) return { items: [] }
      return { items: (await runtimes.versions(caller, params.runtimeId)).versions.map(versionView) }
    },
  )

  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/v1/runtimes/{runtimeId}/sessions',
      operationId: 'listRuntimeSessions',
      tag: 'Runtimes',
      summary: 'The runtime sessions of a hosted agent running now (one sandbox each)',
      params: idParams,
      responses: { 200: { description: 'Running runtime sessions', schema: runtimeSessionListSchema }, ...notFound },
    },
    async ({ params, caller }) => {
      if (runtimes.isBuiltIn(params.runtimeId)) return { items: [] }
      const runtime = await runtimes.get(caller, params.runtimeId)
      return {
        items: (await hosted.sessions.listAll({ tenant: caller.tenant, runtimeId: runtime.runtimeId })).map((s) => ({
          runtimeSessionId: s.runtimeSessionId,
          agentRuntimeId: s.runtimeId,
          agentRuntimeVersion: s.version,
          sessionId: s.sessionId,
          startedAt: s.startedAt.toISOString(),
          lastInvocationAt: s.lastInvocationAt.toISOString(),
          activeInvocations: s.active,
        })),
      }
    },
  )

  route(
    app,
    registry,
    {
      method: 'DELETE',
      path: '/v1/runtimes/{runtimeId}/sessions/{runtimeSessionId}',
      operationId: 'stopRuntimeSession',
      tag: 'Runtimes',
      summary: 'Stop a runtime session now: its agent and sandbox end (AWS StopRuntimeSession)',
      params: sessionParams,
      responses: { 204: { description: 'Stopped' }, 404: { description: 'NotFound: no such runtime, or no such runtime session running' } },
    },
    async ({ params, caller, reply }) => {
      const runtime = await runtimes.get(caller, params.runtimeId)
      await hosted.sessions.stop({ tenant: caller.tenant, runtimeId: runtime.runtimeId, runtimeSessionId: params.runtimeSessionId })
      return reply.code(204).send()
    },
  )

  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/v1/runtimes/{runtimeId}/logs',
      operationId: 'getRuntimeLogs',
      tag: 'Runtimes',
      summary: 'What the agent printed, per runtime session, newest first',
      description:
        'Kept in the store, so logs outlive a restart and every replica reads them: the last CODEBOX_RUNTIME_LOG_MAX_BYTES (1 MiB) of each runtime session, ended ones for CODEBOX_RUNTIME_LOG_RETENTION_SECONDS (24 h), at most CODEBOX_RUNTIME_LOG_MAX_SESSIONS (200) per runtime. A running agent’s output is written every second. One entry per start of a runtime session’s agent.',
      params: idParams,
      query: logsQuery,
      responses: { 200: { description: 'Log entries', schema: runtimeLogListSchema }, ...notFound },
    },
    async ({ params, query, caller }) => {
      if (runtimes.isBuiltIn(params.runtimeId)) return { items: [] }
      const runtime = await runtimes.get(caller, params.runtimeId)
      const logs = await hosted.logs.read(caller.tenant, runtime.runtimeId, {
        ...(query.runtimeSessionId !== undefined ? { runtimeSessionId: query.runtimeSessionId } : {}),
        ...(query.limit !== undefined ? { limit: query.limit } : {}),
      })
      return { items: logs.map(({ version, runtimeId: _r, ...e }) => ({ ...e, agentRuntimeVersion: version })) }
    },
  )

  route(
    app,
    registry,
    {
      method: 'POST',
      path: '/v1/runtimes/{runtimeId}/rollback',
      operationId: 'rollbackRuntime',
      tag: 'Runtimes',
      summary: 'Pin the DEFAULT endpoint to an earlier version (until the next deploy)',
      params: idParams,
      body: rollbackRuntimeRequestSchema,
      responses: { 200: { description: 'The runtime', schema: runtimeSchema }, ...notFound, 409: { description: 'Conflict: the built-in agent' } },
    },
    async ({ params, body, caller, request }) => {
      const runtime = await runtimes.rollback(caller, params.runtimeId, body.version, request.id)
      const { version } = await runtimes.resolve(caller, runtime.runtimeId)
      return view(caller, runtime, version.settings)
    },
  )

  route(
    app,
    registry,
    {
      method: 'DELETE',
      path: '/v1/runtimes/{runtimeId}',
      operationId: 'deleteRuntime',
      tag: 'Runtimes',
      summary: 'Delete a runtime with its versions, bundles and secrets',
      params: idParams,
      responses: { 200: { description: 'What was deleted', schema: runtimeSchema }, ...notFound, 409: { description: 'Conflict: the built-in agent' } },
    },
    async ({ params, caller, request }) => view(caller, await runtimes.delete(caller, params.runtimeId, request.id)),
  )

  route(
    app,
    registry,
    {
      method: 'PUT',
      path: '/v1/runtimes/{runtimeId}/secrets/{name}',
      operationId: 'putRuntimeSecret',
      tag: 'Runtimes',
      summary: 'Set a secret of a runtime (sealed at rest; never returned or logged)',
      params: secretParams,
      body: putRuntimeSecretRequestSchema,
      responses: { 200: { description: 'Its name and time', schema: runtimeSecretSchema }, 400: { description: 'ValidationError' }, ...notFound },
    },
    async ({ params, body, caller, request }) => runtimes.putSecret(caller, params.runtimeId, params.name, body.value, request.id),
  )

  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/v1/runtimes/{runtimeId}/secrets',
      operationId: 'listRuntimeSecrets',
      tag: 'Runtimes',
      summary: 'The names of a runtime’s secrets and when each was set (never the values)',
      params: idParams,
      responses: { 200: { description: 'Secret names', schema: runtimeSecretListSchema }, ...notFound },
    },
    async ({ params, caller }) => ({ items: await runtimes.listSecrets(caller, params.runtimeId) }),
  )

  route(
    app,
    registry,
    {
      method: 'DELETE',
      path: '/v1/runtimes/{runtimeId}/secrets/{name}',
      operationId: 'deleteRuntimeSecret',
      tag: 'Runtimes',
      summary: 'Remove a secret of a runtime',
      params: secretParams,
      responses: { 204: { description: 'Removed', kind: 'empty' }, ...notFound },
    },
    async ({ params, caller, reply, request }) => {
      await runtimes.deleteSecret(caller, params.runtimeId, params.name, request.id)
      return reply.code(204).send()
    },
  )
}
