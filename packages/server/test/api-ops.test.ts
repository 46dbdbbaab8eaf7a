/** Operations: /ping in the AgentCore form, Prometheus /metrics, request ids, the OpenAPI document and its page. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { expectJson, invoke, startSession, testServer, waitUntil } from './fixtures.ts'

test('/ping answers Healthy, and HealthyBusy while a call runs', async (t) => {
  const s = await testServer(t)
  const ping = await expectJson<{ status: string; time_of_last_update: number }>(s.call('GET', '/ping'), 200)
  assert.equal(ping.status, 'Healthy')
  assert.ok(Math.abs(ping.time_of_last_update - Date.now() / 1000) < 60)
  const id = await startSession(s)
  const running = invoke(s, id, 'executeCommand', { command: 'sleep 1' })
  await waitUntil(async () => (await expectJson<{ status: string }>(s.call('GET', '/ping'), 200)).status === 'HealthyBusy', '/ping to say HealthyBusy')
  await expectJson(running, 200)
  assert.equal((await expectJson<{ status: string }>(s.call('GET', '/ping'), 200)).status, 'Healthy')
})

test('/metrics counts sessions, starts, invocations by tool/language/outcome, durations and limits', async (t) => {
  const s = await testServer(t)
  const id = await startSession(s)
  await expectJson(invoke(s, id, 'executeCode', { code: 'print(1)' }), 200)
  await expectJson(invoke(s, id, 'executeCode', { code: '1/0' }), 200)
  await expectJson(s.call('POST', `/v1/sessions/${id}/invoke`, { json: { name: 'executeCommand', arguments: { command: 'sleep 5' }, timeoutMs: 300 } }), 200)
  const res = await s.call('GET', '/metrics')
  assert.match(res.headers.get('content-type')!, /text\/plain/)
  const text = await res.text()
  const value = (line: string): number => {
    const m = text.split('\n').find((l) => l.startsWith(line + ' '))
    assert.ok(m, `missing ${line}`)
    return Number(m.split(' ').at(-1))
  }
  assert.equal(value('codebox_sessions{state="ready"}'), 1)
  assert.equal(value('codebox_session_starts_total{outcome="ok"}'), 1)
  assert.equal(value('codebox_invocations_total{tool="executeCode",language="python",outcome="ok"}'), 1)
  assert.equal(value('codebox_invocations_total{tool="executeCode",language="python",outcome="error"}'), 1)
  assert.equal(value('codebox_limit_kills_total{limit="TIMEOUT"}'), 1)
  assert.equal(value('codebox_invocation_duration_seconds_count{tool="executeCode"}'), 2)
  assert.ok(value('codebox_http_requests_total{method="POST",route="/v1/sessions",status="201"}') >= 1)
  assert.match(text, /codebox_pool_warm_sandboxes \d+/)
  await expectJson(s.call('DELETE', `/v1/sessions/${id}`), 200)
  assert.match(await (await s.call('GET', '/metrics')).text(), /codebox_session_ends_total\{reason="stopped"\} 1/)
})

test('every response carries a request id, the given one when it is well-formed', async (t) => {
  const s = await testServer(t)
  const mine = await s.call('GET', '/ping', { headers: { 'x-request-id': 'trace-123' } })
  assert.equal(mine.headers.get('x-request-id'), 'trace-123')
  const bad = await s.call('GET', '/v1/sessions/nope!', { headers: { 'x-request-id': 'has spaces and \u00e9' } })
  const id = bad.headers.get('x-request-id')!
  assert.match(id, /^req_[0-9a-f]{16}$/)
  assert.equal(((await bad.json()) as { error: { requestId: string } }).error.requestId, id)
})

test('/openapi.json documents every route with the schemas the server validates with; /docs renders it', async (t) => {
  const s = await testServer(t)
  const doc = await expectJson<{
    openapi: string
    paths: Record<
      string,
      Record<
        string,
        { operationId: string; requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown>; required?: string[] } }> } }
      >
    >
  }>(s.call('GET', '/openapi.json'), 200)
  assert.equal(doc.openapi, '3.1.0')
  const ops = Object.values(doc.paths).flatMap((p) => Object.values(p).map((o) => o.operationId))
  for (const op of [
    'startSession',
    'listSessions',
    'getSession',
    'stopSession',
    'invoke',
    'uploadFile',
    'downloadFile',
    'listFiles',
    'deleteFile',
    'listInterpreters',
    'createInterpreter',
    'listAudit',
    'ping',
    'metrics',
  ]) {
    assert.ok(ops.includes(op), `missing ${op}`)
  }
  const invokeBody = doc.paths['/v1/sessions/{sessionId}/invoke']!.post!.requestBody!.content['application/json']!.schema
  assert.deepEqual(invokeBody.required, ['name'])
  assert.deepEqual((invokeBody.properties!.name as { enum: string[] }).enum.length, 9)
  const startBody = doc.paths['/v1/sessions']!.post!.requestBody!.content['application/json']!.schema
  assert.deepEqual((startBody.properties!.timeoutSeconds as { maximum: number }).maximum, 28800)
  assert.ok(doc.paths['/v1/sessions/{sessionId}/files/{path}']!.put!.requestBody!.content['application/octet-stream'])
  const page = await s.call('GET', '/docs')
  assert.match(page.headers.get('content-type')!, /text\/html/)
  const html = await page.text()
  assert.match(html, /<code>\/v1\/sessions\/\{sessionId\}\/invoke<\/code>/)
  assert.doesNotMatch(html, /<script/i, 'the page works offline, without scripts')
})
