/**
 * The gateway relay's signature (egress/gateway-relay.ts): the key and MAC as documented,
 * computed here independently with openssl; the time window's edges; a correctly signed but
 * malformed identity refused; identities checked field by field.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { test } from 'node:test'
import { checkRelayIdentity, gatewayRelayKey, signGatewayRelay, verifyGatewayRelay } from '../src/index.ts'

const sealingKey = Buffer.alloc(32, 0x2a)
const hmac = (keyHex: string, data: string): Buffer =>
  Buffer.from(execFileSync('openssl', ['dgst', '-sha256', '-mac', 'HMAC', '-macopt', `hexkey:${keyHex}`, '-binary'], { input: data }).toString('hex'), 'hex')

test('the key and the signature are the documented HMACs (checked with openssl)', () => {
  const key = gatewayRelayKey(sealingKey)
  assert.deepEqual(key, hmac(sealingKey.toString('hex'), 'codebox gateway relay v1'))
  const headers = signGatewayRelay(key, {
    method: 'POST',
    path: '/internal/gateway/anthropic/v1/messages?x=1',
    identity: { sandboxId: 'sbx', tag: 'rt' },
    nowMs: 1_700_000_000_123,
  })
  const identity = Buffer.from('{"sandboxId":"sbx","tag":"rt"}').toString('base64url')
  assert.equal(headers['x-codebox-gateway-identity'], identity)
  assert.equal(headers['x-codebox-gateway-time'], '1700000000123')
  const mac = hmac(key.toString('hex'), `codebox gateway relay v1\nPOST\n/internal/gateway/anthropic/v1/messages?x=1\n1700000000123\n${identity}`)
  assert.equal(headers['x-codebox-gateway-signature'], mac.toString('base64url'))
  assert.throws(() => gatewayRelayKey(Buffer.alloc(16)), /sealingKey: must be 32 bytes/)
})

test('the time window: its edges pass, a millisecond beyond fails', () => {
  const key = gatewayRelayKey(sealingKey)
  const at = 1_700_000_000_000
  const headers = signGatewayRelay(key, { method: 'GET', path: '/internal/gateway/x', identity: { sandboxId: 'a' }, nowMs: at })
  const check = (nowMs: number): boolean => verifyGatewayRelay(key, { method: 'GET', path: '/internal/gateway/x', headers, nowMs }).ok
  assert.equal(check(at + 60_000), true)
  assert.equal(check(at - 60_000), true)
  assert.equal(check(at + 60_001), false)
  assert.equal(check(at - 60_001), false)
  const repeated = verifyGatewayRelay(key, {
    method: 'GET',
    path: '/internal/gateway/x',
    headers: { ...headers, 'x-codebox-gateway-signature': [headers['x-codebox-gateway-signature']!, 'x'] },
    nowMs: at,
  })
  assert.deepEqual(repeated, { ok: false, reason: 'this route serves the cluster egress proxy only: the request carries no relay signature' })
})

test('a signed identity of the wrong shape is refused; identities are checked field by field', () => {
  const key = gatewayRelayKey(sealingKey)
  const identity = Buffer.from('{"sandboxId":"a","admin":true}').toString('base64url')
  const time = String(Date.now())
  const mac = hmac(key.toString('hex'), `codebox gateway relay v1\nGET\n/internal/gateway/x\n${time}\n${identity}`).toString('base64url')
  const v = verifyGatewayRelay(key, {
    method: 'GET',
    path: '/internal/gateway/x',
    headers: { 'x-codebox-gateway-identity': identity, 'x-codebox-gateway-time': time, 'x-codebox-gateway-signature': mac },
  })
  assert.deepEqual(v, { ok: false, reason: 'the relayed identity is malformed (identity.admin: is not a field of an identity)' })
  assert.deepEqual(checkRelayIdentity({ sandboxId: 'a', sessionId: 'b', tag: 'arn:aws:x/1' }), { sandboxId: 'a', sessionId: 'b', tag: 'arn:aws:x/1' })
  assert.throws(() => checkRelayIdentity({ sessionId: 'b' }), /identity\.sandboxId/)
  assert.throws(() => checkRelayIdentity({ sandboxId: 'a', sessionId: 'a/b' }), /identity\.sessionId/)
  assert.throws(() => checkRelayIdentity({ sandboxId: 'a', tag: 'has space' }), /identity\.tag/)
  assert.throws(() => signGatewayRelay(key, { method: 'GET', path: '/', identity: { sandboxId: '' } }), /identity\.sandboxId/)
})
