/**
 * The executor token of a sandbox pod. The executor in the pod listens on a port; a client must
 * present this token, which is bound to one pod (namespace, name) and a random nonce kept in the
 * pod's annotation. Any API replica recomputes it from the pod it sees in its watch cache and the
 * key every replica shares, so no token is stored anywhere: the key is derived from the store's
 * sealing key (CODEBOX_SEALING_KEY), for this one purpose.
 *
 * The egress token is the same construction under a key of its own purpose: the pod presents it
 * to the cluster's egress proxy (in its proxy URL's password), which recomputes it from the pod
 * in its own watch. Neither token can be derived from the other.
 *
 * A third key of its own purpose signs the model gateway's requests the egress proxy relays to
 * the API (gatewayRelayKey, in @codebox/sandbox's egress/gateway-relay.ts: the server imports it
 * too, and may not import this package).
 */
import { createHmac, randomBytes } from 'node:crypto'
import { validationError } from '@codebox/core'

const PURPOSE = 'codebox kubernetes executor token v1'
const EGRESS_PURPOSE = 'codebox kubernetes egress token v1'

function purposeKey(sealingKey: Buffer, purpose: string): Buffer {
  if (sealingKey.length !== 32) throw validationError('sealingKey', `must be 32 bytes, got ${sealingKey.length}`)
  return createHmac('sha256', sealingKey).update(purpose).digest()
}

/** The token key of every replica: HMAC-SHA256(sealingKey, purpose). The sealing key must be 32 bytes. */
export function executorTokenKey(sealingKey: Buffer): Buffer {
  return purposeKey(sealingKey, PURPOSE)
}

/** The egress token key, shared by the API replicas and the egress proxy: HMAC-SHA256(sealingKey, `codebox kubernetes egress token v1`). */
export function egressTokenKey(sealingKey: Buffer): Buffer {
  return purposeKey(sealingKey, EGRESS_PURPOSE)
}

/** A fresh nonce for a new pod's NONCE_ANNOTATION: 32 random bytes, base64url (43 characters). */
export function newTokenNonce(): string {
  return randomBytes(32).toString('base64url')
}

export interface TokenSubject {
  namespace: string
  podName: string
  /** The pod's NONCE_ANNOTATION. */
  nonce: string
}

const nonceShape = /^[A-Za-z0-9_-]{22,128}$/

/**
 * The pod's executor token: base64url of HMAC-SHA256(key, namespace NUL podName NUL nonce). The
 * fields are NUL-separated and none may hold a NUL, so two different pods never share an input.
 */
export function executorToken(key: Buffer, subject: TokenSubject): string {
  if (key.length < 32) throw validationError('key', `must be at least 32 bytes, got ${key.length}`)
  for (const field of ['namespace', 'podName'] as const) {
    const value = subject[field]
    if (value.length === 0 || value.length > 253 || value.includes('\0')) throw validationError(field, 'must be 1 to 253 characters without NUL')
  }
  if (!nonceShape.test(subject.nonce)) throw validationError('nonce', 'must be 22 to 128 base64url characters (newTokenNonce makes one)')
  return createHmac('sha256', key).update(`${subject.namespace}\0${subject.podName}\0${subject.nonce}`).digest('base64url')
}

/** The pod's egress token: the same HMAC as executorToken, under egressTokenKey. */
export function egressToken(key: Buffer, subject: TokenSubject): string {
  return executorToken(key, subject)
}
