/**
 * The AgentCore control plane for agent runtimes at AWS's paths (service
 * `bedrock-agentcore-control`): GetAgentRuntime, ListAgentRuntimes, ListAgentRuntimeVersions,
 * DeleteAgentRuntime, GetAgentRuntimeEndpoint and ListAgentRuntimeEndpoints read what
 * `codebox runtimes deploy` deployed, over the RuntimeService. CreateAgentRuntime and
 * UpdateAgentRuntime take S3 or ECR artifacts, which only AWS can fetch: they answer a
 * ValidationException saying to deploy with the codebox CLI. The built-in codebox agent is listed.
 */
import { CodeboxError } from '@codebox/core'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { builtInRuntimeId, type RuntimeService } from '../services/runtimes.ts'
import type { Caller } from '../services/sessions.ts'
import type { RuntimeRecord, RuntimeVersionRecord } from '../store/index.ts'
import { awsValidation } from './errors.ts'
import { awsRoute } from './route.ts'

const listQuerySchema = z.object({
  maxResults: z.coerce.number().int().min(1).max(100).optional(),
  nextToken: z.string().max(2048).optional(),
})
const versionQuerySchema = z.object({ version: z.string().max(32).optional() })

/** AWS's codeConfiguration.runtime for codebox's languages (the sandbox image's Python is 3.11). */
const awsRuntimeOf = { node: 'NODE_22', python: 'PYTHON_3_11' } as const

export function runtimeControlRoutes(app: FastifyInstance, runtimes: RuntimeService): void {
  const listedSince = new Date().toISOString()
  const idOf = (request: FastifyRequest): string => (request.params as { agentRuntimeId?: string }).agentRuntimeId ?? ''

  const summary = (caller: Caller, region: string, r: RuntimeRecord, version: number = r.defaultVersion) => ({
    agentRuntimeArn: runtimes.arn(caller, r.runtimeId, region),
    agentRuntimeId: r.runtimeId,
    agentRuntimeVersion: String(version),
    agentRuntimeName: r.name,
    ...(r.description !== undefined ? { description: r.description } : {}),
    lastUpdatedAt: r.updatedAt,
    status: 'READY',
  })
  const builtInSummary = (caller: Caller, region: string) => ({
    agentRuntimeArn: runtimes.arn(caller, builtInRuntimeId, region),
    agentRuntimeId: builtInRuntimeId,
    agentRuntimeVersion: '1',
    agentRuntimeName: builtInRuntimeId,
    description: 'The built-in codebox agent',
    lastUpdatedAt: listedSince,
    status: 'READY',
  })
  const details = (caller: Caller, region: string, r: RuntimeRecord, v: RuntimeVersionRecord) => ({
    ...summary(caller, region, r, v.version),
    createdAt: v.createdAt,
    lifecycleConfiguration: { idleRuntimeSessionTimeout: v.settings.idleTimeoutSeconds, maxLifetime: v.settings.maxLifetimeSeconds },
    networkConfiguration: { networkMode: v.settings.network.mode },
    protocolConfiguration: { serverProtocol: v.settings.protocol },
    // codebox's own fields (AWS SDKs ignore them): what the version runs and from which bundle.
    codebox: {
      entrypoint: v.settings.entrypoint,
      language: v.settings.language,
      runtime: awsRuntimeOf[v.settings.language],
      ...(v.settings.network.allow ? { egressAllowList: v.settings.network.allow } : {}),
      limits: v.settings.limits,
      bundle: { bundleId: v.bundle.bundleId, sha256: v.bundle.sha256, bytes: v.bundle.bytes },
      defaultVersion: String(r.defaultVersion),
      latestVersion: String(r.latestVersion),
    },
  })
  const endpoint = (caller: Caller, region: string, r: RuntimeRecord) => {
    const arn = runtimes.arn(caller, r.runtimeId, region)
    return {
      name: 'DEFAULT',
      id: 'DEFAULT',
      agentRuntimeEndpointArn: `${arn}/runtime-endpoint/DEFAULT`,
      agentRuntimeArn: arn,
      status: 'READY',
      createdAt: r.createdAt,
      lastUpdatedAt: r.updatedAt,
      liveVersion: String(r.defaultVersion),
      ...(r.pinnedVersion !== undefined ? { description: `pinned to version ${r.pinnedVersion} by a rollback` } : {}),
    }
  }
  const artifactsAreAws = (operation: string) =>
    awsValidation(
      `${operation} takes an S3 or ECR artifact, which only AWS can fetch. Deploy to codebox with \`codebox runtimes deploy <dir> --name <name>\` (or POST /v1/runtime-bundles and POST /v1/runtimes); the control plane here reads what was deployed.`,
      'agentRuntimeArtifact',
    )

  awsRoute(app, { method: 'PUT', url: '/' }, async () => {
    throw artifactsAreAws('CreateAgentRuntime')
  })
  awsRoute(app, { method: 'PUT', url: '/:agentRuntimeId/' }, async () => {
    throw artifactsAreAws('UpdateAgentRuntime')
  })

  awsRoute(app, { method: 'POST', url: '/', query: listQuerySchema }, async ({ caller, region, query }) => {
    const all = [builtInSummary(caller, region), ...(await runtimes.list(caller)).map((r) => summary(caller, region, r))]
    const { items, nextToken } = paged(all, query, 'runtimes')
    return { agentRuntimes: items, ...(nextToken ? { nextToken } : {}) }
  })

  awsRoute(app, { method: 'GET', url: '/:agentRuntimeId/', query: versionQuerySchema }, async ({ caller, region, query, request }) => {
    const id = idOf(request)
    if (runtimes.isBuiltIn(id)) return { ...builtInSummary(caller, region), createdAt: listedSince, protocolConfiguration: { serverProtocol: 'HTTP' } }
    const { runtime, version } = await runtimes.resolve(caller, id, query.version)
    return details(caller, region, runtime, version)
  })

  awsRoute(app, { method: 'POST', url: '/:agentRuntimeId/versions/', query: listQuerySchema }, async ({ caller, region, query, request }) => {
    const id = idOf(request)
    if (runtimes.isBuiltIn(id)) return { agentRuntimes: [builtInSummary(caller, region)] }
    const { runtime, versions } = await runtimes.versions(caller, id)
    const all = versions.map((v) => ({ ...summary(caller, region, runtime, v.version), lastUpdatedAt: v.createdAt }))
    const { items, nextToken } = paged(all, query, 'versions')
    return { agentRuntimes: items, ...(nextToken ? { nextToken } : {}) }
  })

  awsRoute(app, { method: 'DELETE', url: '/:agentRuntimeId/', status: 202 }, async ({ caller, request }) => {
    const deleted = await runtimes.delete(caller, idOf(request), request.id)
    // AWS answers DELETING and removes the runtime in the background; codebox has removed it already.
    return { status: 'DELETING', agentRuntimeId: deleted.runtimeId, agentRuntimeVersion: String(deleted.latestVersion) }
  })

  awsRoute(app, { method: 'POST', url: '/:agentRuntimeId/runtime-endpoints/', query: listQuerySchema }, async ({ caller, region, request }) => {
    const id = idOf(request)
    if (runtimes.isBuiltIn(id)) throw builtInHasNoEndpoints()
    return { runtimeEndpoints: [endpoint(caller, region, await runtimes.get(caller, id))] }
  })

  awsRoute(app, { method: 'GET', url: '/:agentRuntimeId/runtime-endpoints/:endpointName/' }, async ({ caller, region, request }) => {
    const id = idOf(request)
    if (runtimes.isBuiltIn(id)) throw builtInHasNoEndpoints()
    const runtime = await runtimes.get(caller, id)
    const name = (request.params as { endpointName?: string }).endpointName ?? ''
    if (name !== 'DEFAULT') {
      throw new CodeboxError(
        'NotFound',
        `runtime ${runtime.name} has no endpoint ${JSON.stringify(name.slice(0, 100))}: codebox runtimes have one endpoint, DEFAULT`,
      )
    }
    return endpoint(caller, region, runtime)
  })
}

const builtInHasNoEndpoints = (): CodeboxError =>
  new CodeboxError('NotFound', `${builtInRuntimeId} is the built-in codebox agent: invoke it at its DEFAULT qualifier; it has no endpoint records`)

/** One page of `all` from the offset in `nextToken` (a token of `kind`), with the token of the next page if there is one. */
function paged<T>(all: T[], query: { maxResults?: number; nextToken?: string }, kind: string): { items: T[]; nextToken?: string } {
  const start = query.nextToken === undefined ? 0 : offsetOf(query.nextToken, kind)
  const end = start + (query.maxResults ?? 10)
  return { items: all.slice(start, end), ...(end < all.length ? { nextToken: Buffer.from(`${kind}:${end}`).toString('base64url') } : {}) }
}

function offsetOf(token: string, kind: string): number {
  const m = new RegExp(`^${kind}:(\\d{1,6})$`).exec(Buffer.from(token, 'base64url').toString('utf8'))
  if (!m) throw awsValidation('nextToken is not a token this server issued', 'nextToken')
  return Number(m[1])
}
