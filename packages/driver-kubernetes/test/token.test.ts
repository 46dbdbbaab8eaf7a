/** The executor token: a known vector (computed independently with Python's hmac), binding to pod and nonce, and bad input refused. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CodeboxError } from '@codebox/core'
import { egressToken, egressTokenKey, executorToken, executorTokenKey, newTokenNonce } from '../src/index.ts'

const key = executorTokenKey(Buffer.alloc(32, 7))
const subject = { namespace: 'codebox', podName: 'cbx-0k3m9x2q7w1v5b8n4c6z0a2s4d', nonce: 'bm9uY2Utb2YtdGhlLWdvbGRlbi1wb2QtZm9yLXRlc3Q' }

test('the token is HMAC-SHA256 of namespace, pod name and nonce under a key derived from the sealing key', () => {
  // python3: k = hmac.new(b'\x07'*32, b'codebox kubernetes executor token v1', sha256); hmac.new(k, b'codebox\0cbx-...\0<nonce>', sha256), base64url
  assert.equal(key.toString('hex'), '2a7fb5555760a0c3e03325d1bc682b14747725a24db49f466059b2e75a858f16')
  assert.equal(executorToken(key, subject), 'Jrjhvep6llneDRGAzZGuyU7qF6JCAp0nDQA6M526yR0')
})

test('the egress token is the same HMAC under a key of its own purpose: it cannot stand in for the executor token', () => {
  // python3: k = hmac.new(b'\x07'*32, b'codebox kubernetes egress token v1', sha256); then as above
  const egressKey = egressTokenKey(Buffer.alloc(32, 7))
  assert.equal(egressKey.toString('hex'), '25ed74297910bba4296b25923d641069ad64b6fff2e03286b9b2e48831a82fe4')
  assert.equal(egressToken(egressKey, subject), 'WCW6QJtQwqtzqifTVPW7ayUDL9XImr2KNghU8dpzEvE')
  assert.notEqual(egressToken(egressKey, subject), executorToken(key, subject))
})

test('any replica with the same sealing key computes the same token; another pod, nonce, namespace or key does not', () => {
  const token = executorToken(key, subject)
  assert.equal(executorToken(executorTokenKey(Buffer.alloc(32, 7)), { ...subject }), token)
  const others = [
    executorToken(key, { ...subject, namespace: 'codebox2' }),
    executorToken(key, { ...subject, podName: 'cbx-0k3m9x2q7w1v5b8n4c6z0a2s4e' }),
    executorToken(key, { ...subject, nonce: newTokenNonce() }),
    executorToken(executorTokenKey(Buffer.alloc(32, 8)), subject),
    // The separator keeps the fields apart: moving characters across a boundary changes the token.
    executorToken(key, { ...subject, namespace: 'codeboxc', podName: 'bx-0k3m9x2q7w1v5b8n4c6z0a2s4d' }),
  ]
  assert.equal(new Set([token, ...others]).size, 6)
})

test('nonces are fresh and of the accepted shape', () => {
  const nonces = new Set(Array.from({ length: 100 }, newTokenNonce))
  assert.equal(nonces.size, 100)
  for (const n of nonces) assert.match(n, /^[A-Za-z0-9_-]{43}$/)
})

test('bad keys and subjects are ValidationErrors naming the field', () => {
  const field = (f: string) => (e: unknown) => e instanceof CodeboxError && e.code === 'ValidationError' && e.details.field === f
  assert.throws(() => executorTokenKey(Buffer.alloc(16)), field('sealingKey'))
  assert.throws(() => executorToken(Buffer.alloc(8), subject), field('key'))
  assert.throws(() => executorToken(key, { ...subject, namespace: '' }), field('namespace'))
  assert.throws(() => executorToken(key, { ...subject, podName: 'a\0b' }), field('podName'))
  assert.throws(() => executorToken(key, { ...subject, nonce: 'short' }), field('nonce'))
  assert.throws(() => executorToken(key, { ...subject, nonce: `${'a'.repeat(40)}\n` }), field('nonce'))
})
