/**
 * Who an E2B request comes from. The control plane carries a codebox API key in `X-API-Key` (or
 * `Authorization: Bearer`), under the Authenticator's rules: an open loopback server takes any key,
 * since the E2B SDKs refuse to run without one. Sandbox traffic (envd, the code interpreter) names
 * its sandbox in `E2b-Sandbox-Id` and carries the access token returned at create and connect
 * (`X-Access-Token`, or `E2B-Traffic-Access-Token`, which the code interpreter SDK sends on every
 * call), or else the API key of the sandbox's tenant. The token is an HMAC of the tenant and the
 * sandbox id under a key derived from the store's sealing key: every replica sharing the store
 * recomputes it, and no token is stored. A token that does not match, like an unknown, ended or
 * foreign sandbox, is the same NotFound.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import { CodeboxError } from '@codebox/core'
import type { FastifyRequest } from 'fastify'
import type { Authenticator } from '../../http/auth.ts'
import type { Caller, SessionService } from '../../services/sessions.ts'
import type { StoreApi } from '../../store/index.ts'
import type { E2bSandbox } from './deps.ts'
import { SandboxEnvs } from './envs.ts'

type Headers = FastifyRequest['headers']

/** A header's value when sent once; a repeated or missing header is undefined. */
export function header(headers: Headers, name: string): string | undefined {
  const v = headers[name]
  return typeof v === 'string' ? v : undefined
}

export class E2bAuth {
  readonly #key: Buffer
  readonly #auth: Authenticator
  readonly #sessions: SessionService
  /** Sealing of sandboxes' own environment variables. */
  readonly envs: SandboxEnvs

  constructor(options: { store: StoreApi; auth: Authenticator; sessions: SessionService }) {
    this.#key = options.store.deriveKey('e2b envd access token v1')
    this.envs = new SandboxEnvs(options.store)
    this.#auth = options.auth
    this.#sessions = options.sessions
  }

  /** The caller of a control-plane request: its `X-API-Key` (or `Authorization: Bearer`); Unauthorized otherwise. */
  async caller(headers: Headers): Promise<Caller> {
    const key = header(headers, 'x-api-key')
    if (key !== undefined) return this.#auth.authenticateKey(key.trim() || undefined, 'X-API-Key: <codebox API key>')
    if (headers.authorization !== undefined) return this.#auth.authenticate(headers.authorization)
    return this.#auth.authenticateKey(undefined, 'X-API-Key: <codebox API key>')
  }

  /**
   * The access token of `tenant`'s sandbox `sandboxId` (what create and connect return as
   * envdAccessToken): `<sandboxId>.<mac>`. It names its sandbox because e2b SDKs before 2.14.1
   * send envd's `/files` and `/health` without `E2b-Sandbox-Id`; the token alone then says which.
   */
  accessToken(tenant: string, sandboxId: string): string {
    return `${sandboxId}.${this.#mac(tenant, sandboxId)}`
  }

  /**
   * The live session a sandbox request names, and who it is for. NotFound for an unknown, ended or
   * foreign sandbox and for a token that is not its own; Unauthorized without any credential.
   */
  async sandbox(request: FastifyRequest): Promise<E2bSandbox> {
    const token = header(request.headers, 'x-access-token') ?? header(request.headers, 'e2b-traffic-access-token')
    const sandboxId = header(request.headers, 'e2b-sandbox-id') ?? (token === undefined ? '' : sandboxOfToken(token))
    const notFound = (): CodeboxError => new CodeboxError('NotFound', `no sandbox ${JSON.stringify(sandboxId.slice(0, 64))}: it never existed or has ended`)
    if (!/^[0-9a-zA-Z]{1,40}$/.test(sandboxId)) throw notFound()
    let caller: Caller
    if (token !== undefined) {
      const owner = await this.#sessions.reachableOwner(sandboxId)
      if (!owner || !this.#matches(token, owner.tenant, sandboxId)) throw notFound()
      caller = { tenant: owner.tenant, ...(owner.keyId ? { keyId: owner.keyId } : {}) }
    } else if (header(request.headers, 'x-api-key') !== undefined) {
      caller = await this.caller(request.headers)
    } else {
      throw new CodeboxError(
        'Unauthorized',
        'missing X-Access-Token: send the envdAccessToken that creating or connecting to the sandbox returned, or the X-API-Key of its tenant',
      )
    }
    try {
      const session = await this.#sessions.live(caller, sandboxId)
      const envs = async (): Promise<Record<string, string>> => {
        const record = await this.#sessions.recordOf(caller, sandboxId)
        // What E2B gives every process (its SDK tests check them), then the sandbox's own.
        return { E2B_SANDBOX: 'true', E2B_SANDBOX_ID: sandboxId, ...this.envs.open(record.tenant, record.e2b?.envs, sandboxId) }
      }
      return { caller, sessionId: sandboxId, session, envs }
    } catch (e) {
      // Ended, or a hosted agent's sandbox: to an E2B client it is simply not there.
      if (e instanceof CodeboxError && (e.code === 'SessionTerminated' || e.code === 'Conflict')) throw notFound()
      throw e
    }
  }

  #mac(tenant: string, sandboxId: string): string {
    return createHmac('sha256', this.#key).update(`${tenant}\0${sandboxId}`).digest('base64url')
  }

  /** The token of this sandbox, or the bare MAC that servers before the `<id>.` prefix gave out (sandboxes they started live on). */
  #matches(token: string, tenant: string, sandboxId: string): boolean {
    const mac = this.#mac(tenant, sandboxId)
    const want = Buffer.from(token.includes('.') ? `${sandboxId}.${mac}` : mac)
    const got = Buffer.from(token)
    return got.length === want.length && timingSafeEqual(got, want)
  }
}

/** The sandbox an access token names (`<sandboxId>.<mac>`); '' for a token that names none. */
export function sandboxOfToken(token: string): string {
  const dot = token.indexOf('.')
  return dot > 0 ? token.slice(0, dot) : ''
}
