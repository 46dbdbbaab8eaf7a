/** Native API v1 in-process (fake driver): sessions, the nine tools, SSE, WebSocket and files. */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { test } from 'node:test'
import { expectError, expectJson, invoke, startSession, testServer, waitUntil } from './fixtures.ts'

type Info = {
  sessionId: string
  status: string
  name: string
  endReason?: string
  timeoutSeconds: number
  limits: { idleTimeoutMs: number; memoryBytes: number }
}
type Result = {
  content: { type: string; text?: string; uri?: string; name?: string; resource?: { text?: string; blob?: string } }[]
  structuredContent: { stdout: string; stderr: string; exitCode: number; taskId?: string; taskStatus?: string }
  isError: boolean
}

test('a session is started, read, listed by status and page, stopped, and its record kept', async (t) => {
  const s = await testServer(t)
  const started = await expectJson<Info>(
    s.call('POST', '/v1/sessions', { json: { name: 'first', timeoutSeconds: 60, limits: { memoryBytes: 512 * 1024 ** 2 } } }),
    201,
  )
  assert.match(started.sessionId, /^[0-9a-z]{26}$/)
  assert.equal(started.status, 'READY')
  assert.equal(started.timeoutSeconds, 60)
  assert.equal(started.limits.idleTimeoutMs, 60_000)
  assert.equal(started.limits.memoryBytes, 512 * 1024 ** 2)
  const ids = [started.sessionId, await startSession(s), await startSession(s)]
  assert.equal((await expectJson<Info>(s.call('GET', `/v1/sessions/${ids[0]}`), 200)).name, 'first')

  const seen: string[] = []
  let token: string | undefined
  do {
    const page = await expectJson<{ items: Info[]; nextToken?: string }>(s.call('GET', `/v1/sessions?limit=2${token ? `&nextToken=${token}` : ''}`), 200)
    seen.push(...page.items.map((i) => i.sessionId))
    token = page.nextToken
  } while (token)
  assert.deepEqual([...seen].sort(), [...ids].sort())

  const stopped = await expectJson<Info>(s.call('DELETE', `/v1/sessions/${ids[1]}`), 200)
  assert.equal(stopped.status, 'TERMINATED')
  assert.equal(stopped.endReason, 'stopped')
  assert.equal((await expectJson<Info>(s.call('DELETE', `/v1/sessions/${ids[1]}`), 200)).status, 'TERMINATED', 'stop is idempotent')
  const ready = await expectJson<{ items: Info[] }>(s.call('GET', '/v1/sessions?status=READY'), 200)
  assert.deepEqual(ready.items.map((i) => i.sessionId).sort(), [ids[0], ids[2]].sort())
  const done = await expectJson<{ items: Info[] }>(s.call('GET', '/v1/sessions?status=TERMINATED'), 200)
  assert.deepEqual(
    done.items.map((i) => i.sessionId),
    [ids[1]],
  )
  await expectError(invoke(s, ids[1]!, 'executeCode', { code: 'print(1)' }), 410, 'SessionTerminated')
  await expectError(s.call('GET', '/v1/sessions/doesnotexist'), 404, 'NotFound')
})

test('a retried start with the same clientToken returns the same session, also when the two race', async (t) => {
  const s = await testServer(t)
  const [a, b] = await Promise.all([
    s.call('POST', '/v1/sessions', { json: { clientToken: 'tok-1' } }),
    s.call('POST', '/v1/sessions', { json: { clientToken: 'tok-1' } }),
  ])
  const ia = (await a.json()) as Info
  const ib = (await b.json()) as Info
  assert.equal(ia.sessionId, ib.sessionId)
  assert.deepEqual([a.status, b.status].sort(), [200, 201])
  const again = await expectJson<Info>(s.call('POST', '/v1/sessions', { json: { clientToken: 'tok-1' } }), 200)
  assert.equal(again.sessionId, ia.sessionId)
  assert.equal(s.engine.list().length, 1, 'only one sandbox was started')
})

test('the nine tools run with AgentCore arguments and the one result shape', async (t) => {
  const s = await testServer(t)
  const id = await startSession(s)
  const run = (name: string, args: Record<string, unknown>): Promise<Result> => expectJson<Result>(invoke(s, id, name, args), 200)

  assert.equal((await run('executeCode', { code: 'x = 41' })).isError, false)
  const r = await run('executeCode', { code: 'print(x + 1)', language: 'python' })
  assert.equal(r.structuredContent.stdout, '42\n')
  assert.deepEqual(r.content[0], { type: 'text', text: '42\n' })
  const js = await run('executeCode', { code: 'console.log(6 * 7)', runtime: 'nodejs' })
  assert.equal(js.structuredContent.stdout, '42\n')
  const failed = await run('executeCode', { code: 'raise ValueError("nope")' })
  assert.equal(failed.isError, true)
  assert.match(failed.structuredContent.stderr, /ValueError: nope/)

  const cmd = await run('executeCommand', { command: 'echo out; echo err >&2; exit 3' })
  assert.equal(cmd.structuredContent.exitCode, 3)
  assert.equal(cmd.structuredContent.stdout, 'out\n')
  assert.equal(cmd.isError, true)

  const task = await run('startCommandExecution', { command: 'echo started; sleep 30' })
  const taskId = task.structuredContent.taskId!
  assert.match(taskId, /^task-\d+$/)
  assert.equal((await run('getTask', { taskId })).structuredContent.taskStatus, 'working')
  assert.equal((await run('stopTask', { taskId })).structuredContent.taskStatus, 'canceled')

  await run('writeFiles', {
    content: [
      { path: 'dir/a.txt', text: 'hello' },
      { path: 'b.bin', blob: Buffer.from([0, 1, 255]).toString('base64') },
    ],
  })
  const read = await run('readFiles', { paths: ['dir/a.txt', 'b.bin'] })
  assert.equal(read.content[0]!.resource!.text, 'hello')
  assert.deepEqual([...Buffer.from(read.content[1]!.resource!.blob!, 'base64')], [0, 1, 255])
  const listed = await run('listFiles', { directoryPath: '' })
  assert.deepEqual(listed.content.map((c) => `${c.type}:${c.name}`).sort(), ['resource_link:b.bin', 'resource_link:dir'])
  assert.equal((await run('listFiles', { path: 'dir' })).content[0]!.uri, 'file:///dir/a.txt')
  await run('removeFiles', { paths: ['dir', 'b.bin'] })
  assert.deepEqual((await run('listFiles', {})).content, [])

  await expectError(invoke(s, id, 'executeCode', { code: 'print(1)', runtime: 'deno' }), 400, 'ValidationError')
  await expectError(invoke(s, id, 'readFiles', { paths: ['../etc/passwd'] }), 400, 'ValidationError')
  await expectError(invoke(s, id, 'readFiles', { paths: ['missing.txt'] }), 404, 'NotFound')
})

test('SSE streams output as produced, then the result; an early error is a normal HTTP error', async (t) => {
  const s = await testServer(t)
  const id = await startSession(s)
  const res = await fetch(`${s.url}/v1/sessions/${id}/invoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ name: 'executeCode', arguments: { code: 'import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)' } }),
  })
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type')!, /text\/event-stream/)
  const arrivals: { at: number; text: string }[] = []
  const decoder = new TextDecoder()
  for await (const chunk of res.body!) arrivals.push({ at: performance.now(), text: decoder.decode(chunk) })
  const all = arrivals.map((a) => a.text).join('')
  const events = all
    .split('\n\n')
    .filter((e) => e.startsWith('event:'))
    .map((e) => ({ type: /^event: (\w+)/.exec(e)![1], data: JSON.parse(/\ndata: (.*)/.exec(e)![1]!) as { text?: string } }))
  assert.deepEqual(
    events.map((e) => e.type),
    ['stdout', 'stdout', 'stdout', 'result'],
  )
  assert.deepEqual(
    events.slice(0, 3).map((e) => e.data.text),
    ['0\n', '1\n', '2\n'],
  )
  assert.ok(arrivals.at(-1)!.at - arrivals[0]!.at > 300, 'events arrived over time, not in one piece at the end')

  await expectError(
    fetch(`${s.url}/v1/sessions/${id}/invoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ name: 'executeCode', arguments: {} }),
    }),
    400,
    'ValidationError',
  )
})

test('a client that disconnects mid-call cancels it: the session stays usable', async (t) => {
  const s = await testServer(t)
  const id = await startSession(s)
  const abort = new AbortController()
  const pending = s.call('POST', `/v1/sessions/${id}/invoke`, { json: { name: 'executeCommand', arguments: { command: 'sleep 20; echo late' } } })
  void pending.catch(() => undefined)
  const res = fetch(`${s.url}/v1/sessions/${id}/invoke`, {
    method: 'POST',
    signal: abort.signal,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'executeCode', arguments: { code: 'import time; time.sleep(20)' } }),
  })
  // Both calls are running before the client goes away.
  await waitUntil(() => s.engine.list().some((x) => x.active >= 2), 'both calls to run')
  abort.abort()
  await assert.rejects(res)
  const startedAt = performance.now()
  const r = await expectJson<Result>(invoke(s, id, 'executeCode', { code: 'print("still here")' }), 200)
  assert.equal(r.structuredContent.stdout, 'still here\n')
  assert.ok(performance.now() - startedAt < 10_000)
  const audit = await expectJson<{ items: { action: string; detail?: string }[] }>(s.call('GET', `/v1/audit?sessionId=${id}`), 200)
  assert.ok(
    audit.items.some((e) => e.action === 'executeCode' && e.detail === 'cancelled'),
    JSON.stringify(audit.items),
  )
})

test('the WebSocket carries the same events, and a cancel message stops a call', async (t) => {
  const s = await testServer(t)
  const id = await startSession(s)
  const ws = new WebSocket(`${s.url.replace('http', 'ws')}/v1/ws`)
  const messages: { type: string; id?: string; event?: { type: string; text?: string; result?: Result }; error?: { code: string } }[] = []
  const waiters: (() => void)[] = []
  ws.addEventListener('message', (m) => {
    messages.push(JSON.parse(String(m.data)))
    waiters.splice(0).forEach((w) => w())
  })
  const until = async (pred: () => boolean): Promise<void> => {
    while (!pred()) await new Promise<void>((r) => waiters.push(r))
  }
  await once(ws as unknown as EventTarget, 'open')
  await until(() => messages.some((m) => m.type === 'ready'))
  ws.send(JSON.stringify({ type: 'invoke', id: 'c1', sessionId: id, name: 'executeCode', arguments: { code: 'print("a")\nprint("b")' } }))
  await until(() => messages.some((m) => m.id === 'c1' && m.event?.type === 'result'))
  const c1 = messages.filter((m) => m.id === 'c1')
  assert.equal(c1.map((m) => m.event?.text ?? '').join(''), 'a\nb\n')
  assert.equal(c1.at(-1)!.event!.result!.structuredContent.stdout, 'a\nb\n')

  // Cancelled once it is running (its first output arrived), it ends long before its 30 s sleep.
  const sent = performance.now()
  ws.send(
    JSON.stringify({
      type: 'invoke',
      id: 'c2',
      sessionId: id,
      name: 'executeCode',
      arguments: { code: 'import time\nprint("running", flush=True)\ntime.sleep(30)\nprint("not cancelled")' },
    }),
  )
  await until(() => messages.some((m) => m.id === 'c2' && m.event?.text === 'running\n'))
  ws.send(JSON.stringify({ type: 'cancel', id: 'c2' }))
  await until(() => messages.some((m) => m.id === 'c2' && (m.event?.type === 'result' || m.type === 'error')))
  const elapsedMs = performance.now() - sent
  const c2 = messages.filter((m) => m.id === 'c2')
  const cancelled = c2.at(-1)!.event?.result
  assert.ok(cancelled, `c2 ends with a result: ${JSON.stringify(c2)}`)
  assert.ok(elapsedMs < 15_000, `the cancelled call took ${elapsedMs} ms`)
  assert.equal(cancelled.isError, true)
  assert.match(cancelled.structuredContent.stderr, /the call was cancelled/)
  assert.equal(cancelled.structuredContent.stdout, 'running\n')
  // The session still answers, and nothing of the cancelled cell runs on.
  ws.send(
    JSON.stringify({
      type: 'invoke',
      id: 'c4',
      sessionId: id,
      name: 'executeCommand',
      arguments: { command: 'echo after; ps -eo args | grep -c "[t]ime.sleep(30)" || true' },
    }),
  )
  await until(() => messages.some((m) => m.id === 'c4' && m.event?.type === 'result'))
  assert.equal(messages.find((m) => m.id === 'c4' && m.event?.type === 'result')!.event!.result!.structuredContent.stdout, 'after\n0\n')
  ws.send(JSON.stringify({ type: 'invoke', id: 'c3', sessionId: id, name: 'nope' }))
  ws.send('{not json')
  await until(() => messages.filter((m) => m.type === 'error').length >= 2)
  assert.equal(messages.find((m) => m.id === 'c3')?.error?.code, 'ValidationError')
  ws.close()
})

test('files stream up and down with size, type and exact bytes; list and delete work', async (t) => {
  const s = await testServer(t)
  const id = await startSession(s)
  const bytes = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 7) % 256)
  const up = await expectJson<{ path: string; size: number }>(
    s.call('PUT', `/v1/sessions/${id}/files/data/blob.bin`, { body: bytes, headers: { 'content-type': 'application/octet-stream' } }),
    201,
  )
  assert.deepEqual(up, { path: 'data/blob.bin', size: bytes.length })
  // JSON content is stored as bytes too, never parsed.
  await expectJson(s.call('PUT', `/v1/sessions/${id}/files/x.json`, { body: '{"a":', headers: { 'content-type': 'application/json' } }), 201)
  const down = await s.call('GET', `/v1/sessions/${id}/files/data/blob.bin`)
  assert.equal(down.status, 200)
  assert.equal(down.headers.get('content-length'), String(bytes.length))
  assert.deepEqual(new Uint8Array(await down.arrayBuffer()), bytes)
  const json = await s.call('GET', `/v1/sessions/${id}/files/x.json`)
  assert.match(json.headers.get('content-type')!, /json/)
  assert.equal(await json.text(), '{"a":')
  const list = await expectJson<{ items: { path: string; type: string }[] }>(s.call('GET', `/v1/sessions/${id}/files?recursive=true`), 200)
  assert.deepEqual(list.items.map((e) => `${e.type}:${e.path}`).sort(), ['directory:data', 'file:data/blob.bin', 'file:x.json'])
  await expectError(s.call('DELETE', `/v1/sessions/${id}/files/data`), 409, 'Conflict')
  assert.equal((await s.call('DELETE', `/v1/sessions/${id}/files/data?recursive=true`)).status, 204)
  await expectError(s.call('GET', `/v1/sessions/${id}/files/data/blob.bin`), 404, 'NotFound')
  await expectError(s.call('GET', `/v1/sessions/${id}/files/..%2F..%2Fetc%2Fpasswd`), 400, 'ValidationError')
})
