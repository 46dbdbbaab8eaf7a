/** HostCapacity (503, the server's machine is full): its own error class, and never retried blindly. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CodeInterpreter, HostCapacityError } from '../src/index.ts'
import { sendError, startServer } from './fake-server.ts'

test('a start refused with 503 HostCapacity is thrown at once as HostCapacityError with its details', async () => {
  await using server = await startServer((_req, res) => sendError(res, 503, 'HostCapacity', 'the host has no room for this session'))
  const ci = new CodeInterpreter({ baseUrl: server.url, maxRetries: 3 })
  await assert.rejects(ci.start({ name: 'n' }), (e) => {
    assert.ok(e instanceof HostCapacityError, String(e))
    assert.equal(e.code, 'HostCapacity')
    assert.equal(e.status, 503)
    return true
  })
  assert.equal(server.requests.length, 1, 'not retried')
})
