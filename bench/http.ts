/**
 * The HTTP side of the bench (issue 3's targets): a real codebox server built in this process on
 * the bwrap driver and reached over loopback, print(1) through the SDK (JSON and SSE), through a
 * bare fetch and through the AWS SDK's InvokeCodeInterpreter (SigV4, event stream) next to the
 * same call made in-process, and many sessions running small cells at once through the SDK, every
 * output checked. The server requires keys, as a deployed one does: every call is authenticated.
 */
import {
  BedrockAgentCoreClient,
  InvokeCodeInterpreterCommand,
  StartCodeInterpreterSessionCommand,
  StopCodeInterpreterSessionCommand,
} from '@aws-sdk/client-bedrock-agentcore'
import type { SandboxDriver, ToolResult } from '@codebox/core'
import { SessionManager, type Session } from '@codebox/sandbox'
import { CodeInterpreter } from '@codebox/sdk'
import { buildApp, loadServerConfig, Store, type App } from '@codebox/server'
import { print1, type LoopOptions } from './codebox.ts'
import { loadAverage } from './host.ts'

/** A codebox server listening on 127.0.0.1 in this process. */
export interface BenchServer {
  url: string
  engine: SessionManager
  /** An API key of the bench tenant, for the native API. */
  apiKey: string
  /** An access-key pair of the same tenant, for the AgentCore API. */
  awsKey: { accessKeyId: string; secretAccessKey: string }
  /** Stops listening, stops every session, closes the store. Idempotent. */
  close(): Promise<void>
}

/**
 * Builds the server the way `codebox serve` does, minus the state directory: an in-memory store,
 * a SessionManager on `driver` with no pool, silent logs, and tenant quotas raised out of the way
 * (the bench measures the server, not its rate limits).
 */
export async function startBenchServer(driver: SandboxDriver, { maxSessions }: { maxSessions: number }): Promise<BenchServer> {
  const config = loadServerConfig({
    ...process.env,
    CODEBOX_LOG_LEVEL: 'silent',
    CODEBOX_TENANT_INVOKES_PER_SECOND: '1000000',
    CODEBOX_TENANT_MAX_SESSIONS: '1000',
    CODEBOX_TENANT_STARTS_PER_MINUTE: '1000000',
  })
  const store = Store.open(':memory:')
  let app: App | undefined
  const engine = new SessionManager({ driver, poolSize: 0, maxSessions, onSessionEnd: (s) => void app?.sessions.onSessionEnd(s) })
  let closing: Promise<void> | undefined
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      try {
        await app?.app.close()
      } finally {
        await engine.close()
        store.close()
      }
    })())
  try {
    app = await buildApp({ config, engine, store, loopbackOnly: true })
    await app.app.listen({ host: '127.0.0.1', port: 0 })
    const address = app.app.server.address()
    if (!address || typeof address !== 'object') throw new Error('the bench server has no TCP address')
    const apiKey = (await store.keys.create({ tenant: 'bench' })).secret
    const awsKey = await store.awsKeys.create({ tenant: 'bench' })
    return { url: `http://127.0.0.1:${address.port}`, engine, apiKey, awsKey, close }
  } catch (e) {
    await close()
    throw e
  }
}

/** print(1) round trips, ms, by how the call was made. */
export interface HttpPrintSamples {
  /** `session.runCode` in this process (no HTTP). */
  inProcess: number[]
  /** SDK `executeCode`: POST .../invoke, JSON result. */
  sdk: number[]
  /** SDK `executeCodeStream`: the same POST with `Accept: text/event-stream`, read to its result event. */
  sdkStream: number[]
  /** A bare `fetch` POST of the invoke body and `res.json()`: HTTP without the SDK. */
  rawFetch: number[]
  /** AWS SDK InvokeCodeInterpreterCommand: SigV4-signed POST, event-stream result. */
  awsSdk: number[]
  /** Calls per block; the variants alternate block by block. */
  block: number
}

type Variant = Exclude<keyof HttpPrintSamples, 'block'>

const isPrint1 = (r: ToolResult): boolean => !r.isError && r.structuredContent.stdout === '1\n'

/**
 * print(1) over HTTP (SDK JSON, SDK SSE, bare fetch) and in-process, interleaved in blocks of
 * `block` calls, the order rotating each round, so that machine noise falls on all alike. The
 * HTTP calls go to one session started through the SDK; the in-process calls to `local`, a
 * session of another SessionManager on the same driver. Every result is checked.
 */
export async function printOverHttp(
  server: BenchServer,
  local: Session,
  { warmup, n, block, signal }: LoopOptions & { warmup: number; block: number },
): Promise<HttpPrintSamples> {
  const ci = new CodeInterpreter({ baseUrl: server.url, apiKey: server.apiKey, maxRetries: 0 })
  await ci.start()
  const aws = new BedrockAgentCoreClient({ endpoint: server.url, region: 'us-east-1', credentials: server.awsKey, maxAttempts: 1 })
  const codeInterpreterIdentifier = 'aws.codeinterpreter.v1'
  const awsSession = (await aws.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier }))).sessionId!
  try {
    const sessionId = ci.sessionId!
    const invokeUrl = `${server.url}/v1/sessions/${sessionId}/invoke`
    const body = JSON.stringify({ name: 'executeCode', arguments: { code: 'print(1)' } })
    const calls: Record<Variant, () => Promise<void>> = {
      inProcess: () => print1(local),
      sdk: async () => {
        const r = await ci.executeCode({ code: 'print(1)' })
        if (!isPrint1(r)) throw new Error(`[session ${sessionId}] SDK print(1) gave ${JSON.stringify(r.structuredContent)}`)
      },
      sdkStream: async () => {
        const stream = ci.executeCodeStream({ code: 'print(1)' })
        let stdout = ''
        for (;;) {
          const next = await stream.next()
          if (next.done) {
            if (!isPrint1(next.value) || stdout !== '1\n')
              throw new Error(`[session ${sessionId}] SSE print(1) gave ${JSON.stringify(next.value.structuredContent)}`)
            return
          }
          if (next.value.type === 'stdout') stdout += next.value.text
        }
      },
      rawFetch: async () => {
        const res = await fetch(invokeUrl, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${server.apiKey}` }, body })
        const r = (await res.json()) as ToolResult
        if (res.status !== 200 || !isPrint1(r)) throw new Error(`[session ${sessionId}] fetch print(1) gave HTTP ${res.status} ${JSON.stringify(r)}`)
      },
      awsSdk: async () => {
        const res = await aws.send(
          new InvokeCodeInterpreterCommand({ codeInterpreterIdentifier, sessionId: awsSession, name: 'executeCode', arguments: { code: 'print(1)' } }),
        )
        let stdout: string | undefined
        for await (const event of res.stream!) stdout = event.result?.structuredContent?.stdout
        if (stdout !== '1\n') throw new Error(`[session ${awsSession}] AWS SDK print(1) gave ${JSON.stringify(stdout)}`)
      },
    }
    const variants = Object.keys(calls) as Variant[]
    for (const v of variants) for (let i = 0; i < warmup; i++) await calls[v]()
    const out: HttpPrintSamples = { inProcess: [], sdk: [], sdkStream: [], rawFetch: [], awsSdk: [], block }
    for (let done = 0, round = 0; done < n; done += block, round++) {
      const count = Math.min(block, n - done)
      for (let k = 0; k < variants.length; k++) {
        const v = variants[(round + k) % variants.length]!
        for (let i = 0; i < count; i++) {
          signal.throwIfAborted()
          const t0 = performance.now()
          await calls[v]()
          out[v].push(performance.now() - t0)
        }
      }
    }
    return out
  } finally {
    await ci.stop()
    await aws.send(new StopCodeInterpreterSessionCommand({ codeInterpreterIdentifier, sessionId: awsSession }))
  }
}

export interface ConcurrencyResults {
  sessions: number
  cellsPerSession: number
  /** Cells that returned a result (checked or not). */
  cellsRun: number
  /** Failed calls (start, cell or stop), each with its session; must be none. */
  errors: string[]
  /** Cells whose result was not exactly their own output; must be none. */
  mismatches: string[]
  /** From the first start request to the last stop, ms. */
  wallMs: number
  /** From the first start request until the last session had started, ms. */
  startWindowMs: number
  /** Each SDK `start()`, ms. */
  start: number[]
  /** Each session's first `executeCode`, ms: it also waits for the session's Python kernel to be up. */
  firstCell: number[]
  /** Every other `executeCode`, ms. */
  cell: number[]
  /** Each SDK `stop()`, ms. */
  stop: number[]
  /** Sessions the server's engine still had after every stop (must be 0). */
  leftRunning: number
  /** The load average right after the run (it loads the machine itself). */
  loadAfter: string
}

/**
 * `sessions` clients at once, each through its own CodeInterpreter (no retries, so every failure
 * counts): start, `cells` cells printing a line unique to the session and the cell, each compared
 * with what it must print, then stop. Failures are collected, not thrown, so one session's error
 * does not hide the others'; every session is stopped whatever happened.
 */
export async function concurrentSessions(
  server: BenchServer,
  { sessions, cells, signal }: { sessions: number; cells: number; signal: AbortSignal },
): Promise<ConcurrencyResults> {
  const out: ConcurrencyResults = {
    sessions,
    cellsPerSession: cells,
    cellsRun: 0,
    errors: [],
    mismatches: [],
    wallMs: 0,
    startWindowMs: 0,
    start: [],
    firstCell: [],
    cell: [],
    stop: [],
    leftRunning: 0,
    loadAfter: '',
  }
  const message = (e: unknown): string => (e instanceof Error ? `${e.name}: ${e.message}` : String(e))
  const t0 = performance.now()
  const worker = async (i: number): Promise<void> => {
    const ci = new CodeInterpreter({ baseUrl: server.url, apiKey: server.apiKey, maxRetries: 0 })
    try {
      const ts = performance.now()
      await ci.start({ signal })
      out.start.push(performance.now() - ts)
      out.startWindowMs = Math.max(out.startWindowMs, performance.now() - t0)
      for (let j = 0; j < cells; j++) {
        signal.throwIfAborted()
        const tc = performance.now()
        const r = await ci.executeCode({ code: `print("s${i}-c${j}", ${i}*${j})`, signal })
        ;(j === 0 ? out.firstCell : out.cell).push(performance.now() - tc)
        out.cellsRun++
        const want = `s${i}-c${j} ${i * j}\n`
        if (r.isError || r.structuredContent.stdout !== want || r.structuredContent.stderr !== '') {
          out.mismatches.push(`session ${i} cell ${j}: wanted ${JSON.stringify(want)}, got ${JSON.stringify(r.structuredContent)}`)
        }
      }
    } catch (e) {
      if (!signal.aborted) out.errors.push(`session ${i} (${ci.sessionId ?? 'not started'}): ${message(e)}`)
    } finally {
      try {
        const ts = performance.now()
        if (ci.sessionId !== undefined) {
          await ci.stop()
          out.stop.push(performance.now() - ts)
        }
      } catch (e) {
        out.errors.push(`session ${i} (${ci.sessionId}): stop: ${message(e)}`)
      }
    }
  }
  await Promise.all(Array.from({ length: sessions }, (_, i) => worker(i)))
  out.wallMs = performance.now() - t0
  signal.throwIfAborted()
  out.leftRunning = server.engine.list().length
  out.loadAfter = loadAverage()
  return out
}
