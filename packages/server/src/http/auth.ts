/**
 * Who is calling. With no API keys in the store the server is open, and only to loopback (it
 * refuses to bind elsewhere, and refuses requests if it finds itself bound elsewhere without
 * keys). Once a key was created (even if since revoked), every /v1 request needs `Authorization: Bearer <key>`; the key's tenant is the
 * caller.
 */
import { CodeboxError } from '@codebox/core'
import type { Caller } from '../services/sessions.ts'
import type { StoreApi } from '../store/index.ts'

export const OPEN_TENANT = 'default'

export class Authenticator {
  private readonly store: StoreApi
  private readonly loopbackOnly: boolean

  constructor(store: StoreApi, options: { loopbackOnly: boolean }) {
    this.store = store
    this.loopbackOnly = options.loopbackOnly
  }

  /**
   * True while no key was ever created: the server accepts unauthenticated calls from loopback.
   * Revoking every key does not reopen it.
   */
  async open(): Promise<boolean> {
    return !(await this.store.keys.anyCreated())
  }

  /** The caller of a request with this Authorization header value; Unauthorized otherwise. */
  async authenticate(authorization: string | undefined): Promise<Caller> {
    return this.authenticateKey(bearer(authorization))
  }

  /**
   * The caller of an API key given some other way than `Authorization: Bearer` (the E2B API's
   * `X-API-Key`, `header` in messages); an open loopback server takes any key or none.
   */
  async authenticateKey(secret: string | undefined, header = 'Authorization: Bearer <key>'): Promise<Caller> {
    if (await this.open()) {
      if (!this.loopbackOnly) {
        throw new CodeboxError('Unauthorized', 'this server listens beyond loopback and has no API keys; create one with `codebox keys create --tenant <name>`')
      }
      return { tenant: OPEN_TENANT }
    }
    if (secret === undefined) throw new CodeboxError('Unauthorized', `missing API key: send \`${header}\` (keys come from \`codebox keys create\`)`)
    const key = await this.store.keys.authenticate(secret)
    if (!key) throw new CodeboxError('Unauthorized', 'the API key is not valid (unknown or revoked)')
    return { tenant: key.tenant, keyId: key.keyId }
  }
}

function bearer(header: string | undefined): string | undefined {
  if (!header) return undefined
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header)
  if (!m) throw new CodeboxError('Unauthorized', 'the Authorization header must be `Bearer <key>`')
  return m[1]
}
