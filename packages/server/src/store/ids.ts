/**
 * Random identifiers and secrets of the store: API key secrets and ids, custom interpreter ids.
 * Every character comes from the OS CSPRNG by rejection sampling, so each is uniform over base62.
 */
import { createHash, randomBytes } from 'node:crypto'

const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
/** 248 = 4 × 62: bytes at or above it are dropped so `byte % 62` has no bias. */
const unbiasedBelow = 248

/** A string of `length` uniformly random base62 characters. */
export function randomBase62(length: number): string {
  let out = ''
  while (out.length < length) {
    for (const byte of randomBytes(length - out.length + 8)) {
      if (byte >= unbiasedBelow) continue
      out += alphabet[byte % 62]
      if (out.length === length) break
    }
  }
  return out
}

/** The form of an API key secret: `cbx_` and 40 base62 characters (about 238 bits). */
export const keySecretPattern = /^cbx_[0-9A-Za-z]{40}$/

/** A new API key secret; shown to the user once, stored only as its SHA-256. */
export const newKeySecret = (): string => `cbx_${randomBase62(40)}`

/** A new API key id, `key_` and 12 base62 characters; safe to log and show. */
export const newKeyId = (): string => `key_${randomBase62(12)}`

/** A custom interpreter id in the AgentCore form, `${name}-${10 base62 characters}`. */
export const newInterpreterId = (name: string): string => `${name}-${randomBase62(10)}`

/** Lowercase hex SHA-256 of a UTF-8 string. */
export const sha256Hex = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex')
