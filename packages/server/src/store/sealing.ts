/**
 * Sealing of secrets that the server must read back (SigV4 secret keys, runtime secrets):
 * AES-256-GCM under the store's sealing key (SQLite: a file beside the database; PostgreSQL: the key every replica is given), with the owner of the
 * secret bound in as associated data so a sealed value cannot be moved to another row.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { CodeboxError } from '@codebox/core'

/** `v1.<iv>.<tag>.<ciphertext>`, base64url; `aad` is bound in as associated data. */
export function seal(key: Buffer, aad: string, secret: string): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  cipher.setAAD(Buffer.from(aad))
  const body = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()])
  return ['v1', iv, cipher.getAuthTag(), body].map((p) => (typeof p === 'string' ? p : p.toString('base64url'))).join('.')
}

/** The secret `seal` sealed with the same key and `aad`; Internal naming `what` otherwise. */
export function unseal(key: Buffer, aad: string, sealed: string, what: string): string {
  const [version, iv, tag, body] = sealed.split('.')
  if (version !== 'v1' || !iv || !tag || body === undefined) throw new CodeboxError('Internal', `${what} has an unreadable secret`)
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'))
    decipher.setAAD(Buffer.from(aad))
    decipher.setAuthTag(Buffer.from(tag, 'base64url'))
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8')
  } catch (e) {
    throw new CodeboxError(
      'Internal',
      `${what} cannot be unsealed: the sealing key does not match this database (SQLite: its <file>.key; PostgreSQL: CODEBOX_SEALING_KEY or CODEBOX_SEALING_KEY_FILE)`,
      { cause: e },
    )
  }
}
