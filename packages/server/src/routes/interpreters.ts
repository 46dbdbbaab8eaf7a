/**
 * Native API v1: interpreter configurations — the built-in `codebox.v1` and a tenant's named
 * ones, each with the default limits (and image) of the sessions started from it.
 */
import {
  CodeboxError,
  checkPreload,
  auditListSchema,
  auditQuerySchema,
  createInterpreterRequestSchema,
  interpreterIdSchema,
  interpreterListSchema,
  interpreterSchema,
  type Interpreter,
} from '@codebox/core'
import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { route, type RouteRegistry } from '../http/route.ts'
import { checkNetwork } from '../services/network.ts'
import type { SessionService } from '../services/sessions.ts'
import type { InterpreterRecord, StoreApi } from '../store/index.ts'

export function interpreterRoutes(app: FastifyInstance, registry: RouteRegistry, store: StoreApi, sessions: SessionService): void {
  const view = (r: InterpreterRecord): Interpreter => ({
    interpreterId: r.interpreterId,
    name: r.name,
    ...(r.description ? { description: r.description } : {}),
    type: r.tenant === undefined ? 'SYSTEM' : 'CUSTOM',
    status: r.status,
    image: r.image,
    limits: { ...sessions.defaultLimits, ...r.limits },
    network: { mode: r.network.mode, ...(r.network.allow ? { allow: r.network.allow } : {}) },
    preload: [...(r.preload ?? sessions.defaultPreload)],
    driver: r.driver ?? sessions.defaultDriver,
    createdAt: r.createdAt,
    lastUpdatedAt: r.lastUpdatedAt,
  })
  const idParams = z.strictObject({ interpreterId: interpreterIdSchema })

  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/v1/interpreters',
      operationId: 'listInterpreters',
      tag: 'Interpreters',
      summary: 'List interpreters: the built-in ones, then the tenant’s own',
      responses: { 200: { description: 'Interpreters', schema: interpreterListSchema } },
    },
    async ({ caller }) => ({ items: (await store.interpreters.list(caller.tenant)).map(view) }),
  )
  route(
    app,
    registry,
    {
      method: 'POST',
      path: '/v1/interpreters',
      operationId: 'createInterpreter',
      tag: 'Interpreters',
      summary: 'Create a named interpreter with its own default limits, network, preload and driver',
      body: createInterpreterRequestSchema,
      responses: {
        201: { description: 'Created', schema: interpreterSchema },
        400: { description: 'ValidationError' },
        409: { description: 'Conflict: the tenant has one of that name' },
      },
    },
    async ({ body, caller, reply }) => {
      // Check the limits now, so a bad interpreter fails here and not at every session start.
      sessions.checkLimits(body.limits ?? {})
      const network = body.network ?? { mode: 'SANDBOX' as const }
      checkNetwork(network, 'body.network', 'give network.allow')
      const preload = body.preload && checkPreload(body.preload, 'body.preload')
      // The driver must be registered and able to run here: a start would fail otherwise.
      if (body.driver !== undefined) await sessions.checkDriver(body.driver, 'body.driver')
      await store.tenants.ensure(caller.tenant)
      const created = await store.interpreters.create({
        tenant: caller.tenant,
        name: body.name,
        description: body.description,
        image: body.image,
        limits: body.limits ?? {},
        network,
        ...(preload ? { preload } : {}),
        ...(body.driver !== undefined ? { driver: body.driver } : {}),
      })
      return reply.code(201).send(view(created))
    },
  )
  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/v1/interpreters/{interpreterId}',
      operationId: 'getInterpreter',
      tag: 'Interpreters',
      summary: 'Get an interpreter',
      params: idParams,
      responses: { 200: { description: 'The interpreter', schema: interpreterSchema }, 404: { description: 'NotFound' } },
    },
    async ({ params, caller }) => {
      const r = await store.interpreters.get(params.interpreterId, caller.tenant)
      if (!r) throw new CodeboxError('NotFound', `no interpreter ${JSON.stringify(params.interpreterId)}; list them with GET /v1/interpreters`)
      return view(r)
    },
  )
  route(
    app,
    registry,
    {
      method: 'DELETE',
      path: '/v1/interpreters/{interpreterId}',
      operationId: 'deleteInterpreter',
      tag: 'Interpreters',
      summary: 'Delete a custom interpreter (running sessions keep their limits)',
      params: idParams,
      responses: { 200: { description: 'Deleted', schema: interpreterSchema }, 404: { description: 'NotFound' }, 409: { description: 'Conflict: built-in' } },
    },
    async ({ params, caller }) => view(await store.interpreters.delete(params.interpreterId, caller.tenant)),
  )
}

export function auditRoutes(app: FastifyInstance, registry: RouteRegistry, store: StoreApi): void {
  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/v1/audit',
      operationId: 'listAudit',
      tag: 'Audit',
      summary: 'The audit log of the tenant: every invocation, start, stop and file transfer',
      description: 'Tenant-wide: newest first. With sessionId: that session, oldest first.',
      query: auditQuerySchema,
      responses: { 200: { description: 'A page of entries', schema: auditListSchema } },
    },
    async ({ query, caller }) => store.audit.list({ tenant: caller.tenant, ...query }),
  )
}
