/**
 * The AgentCore control plane for code interpreters at AWS's paths (Create/Get/List/Delete
 * CodeInterpreter), over the store's interpreters, and the resolver both planes use to turn a
 * path's identifier (an id, an ARN, or the built-in `aws.codeinterpreter.v1`) into an interpreter
 * the caller may use.
 */
import { checkPreload, CodeboxError } from '@codebox/core'
import type { FastifyInstance } from 'fastify'
import { accountOf } from '../services/accounts.ts'
import { checkNetwork } from '../services/network.ts'
import type { Caller, SessionService } from '../services/sessions.ts'
import type { InterpreterNetwork, InterpreterRecord, StoreApi } from '../store/index.ts'
import { builtInInterpreterId } from '../store/index.ts'
import { awsValidation } from './errors.ts'
import { awsRoute } from './route.ts'
import { awsBuiltInId, createInterpreterBodySchema, egressAllowTag, listInterpretersQuerySchema } from './shapes.ts'

/** The interpreter a path's identifier names, if the caller may use it; ResourceNotFound otherwise. */
export async function resolveInterpreter(store: StoreApi, caller: Caller, identifier: string): Promise<InterpreterRecord> {
  const id = codeboxId(identifier)
  const record = id === undefined ? undefined : await store.interpreters.get(id, caller.tenant)
  if (!record) throw new CodeboxError('NotFound', `code interpreter ${JSON.stringify(identifier.slice(0, 200))} was not found`)
  return record
}

/** codebox's id for an AWS identifier: the built-in alias, an ARN's last part, or the id itself. */
function codeboxId(identifier: string): string | undefined {
  const id = identifier.startsWith('arn:') ? identifier.slice(identifier.lastIndexOf('/') + 1) : identifier
  if (id === awsBuiltInId) return builtInInterpreterId
  return /^[a-zA-Z][a-zA-Z0-9_.-]{0,99}$/.test(id) ? id : undefined
}

export function controlPlaneRoutes(app: FastifyInstance, store: StoreApi, sessions: SessionService): void {
  const awsId = (r: InterpreterRecord): string => (r.interpreterId === builtInInterpreterId ? awsBuiltInId : r.interpreterId)
  const arn = (r: InterpreterRecord, caller: Caller, region: string): string =>
    r.tenant === undefined
      ? `arn:aws:bedrock-agentcore:${region}:aws:code-interpreter/${awsId(r)}`
      : `arn:aws:bedrock-agentcore:${region}:${accountOf(caller.tenant)}:code-interpreter-custom/${r.interpreterId}`
  const summary = (r: InterpreterRecord, caller: Caller, region: string) => ({
    codeInterpreterId: awsId(r),
    codeInterpreterArn: arn(r, caller, region),
    name: r.name,
    ...(r.description ? { description: r.description } : {}),
    status: r.status,
    createdAt: r.createdAt,
    lastUpdatedAt: r.lastUpdatedAt,
  })

  awsRoute(app, { method: 'PUT', url: '', body: createInterpreterBodySchema, status: 202 }, async ({ caller, region, body }) => {
    const network = networkOf(body)
    const limits = body.codebox?.limits ?? {}
    sessions.checkLimits(limits)
    const preload = body.codebox?.preload && checkPreload(body.codebox.preload, 'codebox.preload')
    const driver = body.codebox?.driver
    if (driver !== undefined) await sessions.checkDriver(driver, 'codebox.driver')
    const created = await store.interpreters.create({
      tenant: caller.tenant,
      name: body.name,
      ...(body.description ? { description: body.description } : {}),
      image: body.codebox?.image ?? 'default',
      limits,
      network,
      tags: body.tags ?? {},
      ...(preload ? { preload } : {}),
      ...(driver !== undefined ? { driver } : {}),
      ...(body.executionRoleArn ? { executionRoleArn: body.executionRoleArn } : {}),
      ...(body.clientToken ? { clientToken: body.clientToken } : {}),
    })
    if (created.name !== body.name) {
      throw awsValidation('clientToken was used before to create another code interpreter', 'clientToken', 'IdempotentParameterMismatchException')
    }
    return { codeInterpreterId: created.interpreterId, codeInterpreterArn: arn(created, caller, region), createdAt: created.createdAt, status: created.status }
  })

  awsRoute(app, { method: 'GET', url: '/:codeInterpreterId' }, async ({ caller, region, identifier }) => {
    const r = await resolveInterpreter(store, caller, identifier)
    return {
      ...summary(r, caller, region),
      ...(r.executionRoleArn ? { executionRoleArn: r.executionRoleArn } : {}),
      networkConfiguration: {
        networkMode: r.network.mode,
        ...(r.network.vpcConfig ? { vpcConfig: r.network.vpcConfig } : {}),
      },
      codebox: {
        image: r.image,
        limits: { ...sessions.defaultLimits, ...r.limits },
        ...(r.network.allow ? { egressAllowList: r.network.allow } : {}),
        preload: [...(r.preload ?? sessions.defaultPreload)],
        driver: r.driver ?? sessions.defaultDriver,
      },
    }
  })

  awsRoute(app, { method: 'POST', url: '', query: listInterpretersQuerySchema }, async ({ caller, region, query }) => {
    const all = (await store.interpreters.list(caller.tenant))
      .filter((r) => query.type === undefined || (query.type === 'SYSTEM') === (r.tenant === undefined))
      .map((r) => summary(r, caller, region))
    const start = query.nextToken === undefined ? 0 : offsetOf(query.nextToken)
    const size = query.maxResults ?? 10
    const page = all.slice(start, start + size)
    return {
      codeInterpreterSummaries: page,
      ...(start + size < all.length ? { nextToken: Buffer.from(`interpreters:${start + size}`).toString('base64url') } : {}),
    }
  })

  awsRoute(app, { method: 'DELETE', url: '/:codeInterpreterId', status: 202 }, async ({ caller, identifier }) => {
    const r = await resolveInterpreter(store, caller, identifier)
    if (r.tenant === undefined) throw awsValidation(`${identifier} is a system code interpreter and cannot be deleted`, 'codeInterpreterId')
    const deleted = await store.interpreters.delete(r.interpreterId, caller.tenant)
    return { codeInterpreterId: deleted.interpreterId, status: deleted.status, lastUpdatedAt: deleted.lastUpdatedAt }
  })
}

/** The network settings of a create request: the mode, and for VPC the allow-list (extension or tag). */
function networkOf(body: {
  networkConfiguration: { networkMode: InterpreterNetwork['mode']; vpcConfig?: InterpreterNetwork['vpcConfig'] }
  tags?: Record<string, string>
  codebox?: { egressAllowList?: string[] }
}): InterpreterNetwork {
  const { networkMode: mode, vpcConfig } = body.networkConfiguration
  const allow = body.codebox?.egressAllowList ?? body.tags?.[egressAllowTag]?.split(/[\s,]+/).filter(Boolean)
  checkNetwork(
    { mode, ...(allow ? { allow } : {}) },
    'networkConfiguration',
    `give the tag ${egressAllowTag} (entries separated by spaces) or codebox.egressAllowList`,
  )
  return { mode, ...(mode === 'VPC' ? { allow } : {}), ...(vpcConfig ? { vpcConfig } : {}) }
}

function offsetOf(token: string): number {
  const m = /^interpreters:(\d{1,6})$/.exec(Buffer.from(token, 'base64url').toString('utf8'))
  if (!m) throw awsValidation('nextToken is not a token this server issued', 'nextToken')
  return Number(m[1])
}
