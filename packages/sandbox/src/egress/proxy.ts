/**
 * One session's egress proxy: an HTTP forward proxy that speaks CONNECT (HTTPS and any TCP) and
 * absolute-URI plain HTTP (`GET http://host/...`, forwarded without following redirects). Every
 * request is authorized (authorize.ts) before a byte leaves; a denial is a `403` whose plain-text
 * body says why. One request or tunnel per client connection (answers carry `Connection: close`),
 * a bounded number of connections, a header size and time cap, and idle timeouts. The reserved
 * name `codebox-gateway` is never resolved: its requests go to the model gateway's handler when
 * the listener has it (absolute-URI requests, and those inside a CONNECT to port 80, over
 * HTTP/1.1 or HTTP/2 cleartext), and are refused otherwise (gateway.ts).
 *
 * One listener per session has one policy (`rules`). A listener shared by many clients (the
 * cluster's egress proxy, packages/driver-kubernetes/src/egress/) instead gives `admit`, which
 * names the client of each request and its rules, or refuses it (407 with a Proxy-Authenticate
 * challenge, 403, 503) before anything else is looked at.
 */
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import http2 from 'node:http2'
import net from 'node:net'
import { authorize, connectFirst, type AuthorizeOptions } from './authorize.ts'
import { GATEWAY_HOST, isGatewayHost, type GatewayHandler, type GatewayIdentity } from './gateway.ts'
import { parsePort, type EgressRules } from './policy.ts'

/** Who sent a request, for a listener shared by many clients: their rules, or a refusal. */
export type EgressAdmission =
  | {
      ok: true
      rules: EgressRules
      /** Names the client in decisions (e.g. its pod). */
      client?: string
      /** The client may use the model gateway (`EgressProxyOptions.gateway`), as this identity; absent: its gateway requests are refused. */
      gateway?: GatewayIdentity
    }
  | { ok: false; status: 403 | 407 | 503; reason: string }

/** Who an admitted request is from, as the gateway and the decisions see it. */
type Admitted = { rules: EgressRules; client?: string; gateway?: GatewayIdentity }

export interface EgressProxyOptions extends Omit<AuthorizeOptions, 'rules'> {
  /** The one policy of every request (a session's own listener); or give `admit`. */
  rules?: EgressRules
  /**
   * Decides per request (plain HTTP or CONNECT) whose policy applies, from its headers and its
   * connection (`req.socket`), before anything else; a 407 carries `Proxy-Authenticate: Basic`.
   */
  admit?: (req: IncomingMessage) => EgressAdmission | Promise<EgressAdmission>
  /** The refusal of `codebox-gateway` requests when `gateway` is absent; default: not enabled for this session. */
  gatewayOffReason?: string
  connectTimeoutMs: number
  idleTimeoutMs: number
  headerTimeoutMs: number
  maxConnections: number
  maxHeaderBytes: number
  /** Called for every request the proxy decides on. */
  onDecision: (decision: EgressDecision) => void
  /**
   * The model gateway, for a session that uses it: requests for `http://codebox-gateway/...` go
   * to `handler` (undefined when the server has no gateway) with this listener's `identity`
   * (required with `rules`); with `admit`, only clients admitted with a `gateway` identity reach
   * it, as that identity. Without it, such requests are refused; the name is never resolved either way.
   */
  gateway?: { identity?: GatewayIdentity; handler: GatewayHandler | undefined }
}

export interface EgressDecision {
  host: string
  port: number
  allowed: boolean
  /** Why it was refused (without the `codebox egress:` prefix). */
  reason?: string
  /** The client `admit` named, if any. */
  client?: string
}

export interface EgressProxy {
  /** Accepts the sandbox's connections; listen on the session's unix socket. */
  readonly server: net.Server
  /** Stops listening and ends every open connection at once. */
  close(): void
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
}

/**
 * Writes a whole plain-text answer on a raw socket and closes it. What the client still sends is
 * read and dropped for a moment (closing with unread input would reset the connection before the
 * client reads the answer), then the socket is destroyed whatever the client does.
 */
function answerRaw(socket: net.Socket, status: number, message: string): void {
  if (!socket.writable) return void socket.destroy()
  const body = `codebox egress: ${message}\n`
  const challenge = status === 407 ? `Proxy-Authenticate: ${PROXY_CHALLENGE}\r\n` : ''
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\n${challenge}Content-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  )
  socket.resume()
  const linger = setTimeout(() => socket.destroy(), 2000).unref()
  socket.once('close', () => clearTimeout(linger))
}

function answer(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) return void res.destroy()
  const body = `codebox egress: ${message}\n`
  // HTTP/2 (a gateway tunnel) has no Connection header.
  const close = res.req?.httpVersionMajor === 2 ? {} : { connection: 'close' }
  const challenge = status === 407 ? { 'proxy-authenticate': PROXY_CHALLENGE } : {}
  res.writeHead(status, { ...challenge, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), ...close })
  res.end(body)
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
])

/** Raw header pairs without hop-by-hop headers (the fixed ones and those Connection names). */
function endToEnd(raw: readonly string[], drop: readonly string[] = []): string[] {
  const named = new Set(drop)
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') for (const t of raw[i + 1]!.split(',')) named.add(t.trim().toLowerCase())
  }
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    if (!HOP_BY_HOP.has(name) && !named.has(name)) out.push(raw[i]!, raw[i + 1]!)
  }
  return out
}

/** The challenge of a 407: clients (curl, pip, Python's requests) then send the proxy URL's user and password. */
const PROXY_CHALLENGE = 'Basic realm="codebox egress", charset="UTF-8"'

/** What an HTTP/2 client sends first (RFC 9113, 3.4). */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')

const gatewayOff = `the model gateway (${GATEWAY_HOST}) is not enabled for this session`

export function createEgressProxy(options: EgressProxyOptions): EgressProxy {
  if ((options.rules === undefined) === (options.admit === undefined)) throw new TypeError('createEgressProxy needs exactly one of rules and admit')
  if (options.rules !== undefined && options.gateway && !options.gateway.identity)
    throw new TypeError('createEgressProxy: a gateway with rules needs its identity')
  const listenerGateway = options.gateway?.identity
  const admit = options.admit ?? ((): EgressAdmission => ({ ok: true, rules: options.rules!, ...(listenerGateway ? { gateway: listenerGateway } : {}) }))
  // The client of each gateway tunnel, for the requests inside it (HTTP/1.1 by its socket, HTTP/2 by its session).
  const tunnelClients = new WeakMap<object, Admitted>()
  let handingOver: Admitted | undefined
  const gatewayRefusal = options.gatewayOffReason ?? gatewayOff
  const clients = new Set<net.Socket>()
  const headerDeadlines = new WeakMap<net.Socket, NodeJS.Timeout>()
  const headersDone = (socket: net.Socket): void => clearTimeout(headerDeadlines.get(socket))

  /** Authorizes host:port, reports the decision, and connects; undefined after answering a failure. */
  const open = async (who: Admitted, host: string, port: number, fail: (status: number, message: string) => void): Promise<net.Socket | undefined> => {
    const auth = await authorize({ ...options, rules: who.rules }, host, port)
    const client = who.client === undefined ? {} : { client: who.client }
    options.onDecision({ host: host.slice(0, 255), port, allowed: auth.ok, ...(auth.ok ? {} : { reason: auth.reason }), ...client })
    if (!auth.ok) return void fail(auth.status, auth.reason)
    try {
      return await connectFirst(auth.addresses, port, options.connectTimeoutMs)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      return void fail(code === 'ETIMEDOUT' ? 504 : 502, `cannot connect to ${host}:${port} (${code ?? (e as Error).message})`)
    }
  }

  const tunnel = async (req: IncomingMessage, client: net.Socket, head: Buffer): Promise<void> => {
    headersDone(client)
    const who = await admit(req)
    if (!who.ok) return answerRaw(client, who.status, who.reason)
    const m = /^(\[[^\]]+\]|[^:[\]]+):(\d+)$/.exec(req.url ?? '')
    const port = m ? parsePort(m[2]!) : undefined
    if (!m || port === undefined) return answerRaw(client, 400, 'CONNECT needs host:port')
    if (isGatewayHost(m[1]!)) return gatewayTunnel(client, head, port, who)
    const upstream = await open(who, m[1]!, port, (status, message) => answerRaw(client, status, message))
    if (!upstream) return
    if (client.destroyed) return void upstream.destroy()
    upstream.setTimeout(options.idleTimeoutMs, () => upstream.destroy())
    upstream.once('close', () => client.destroy())
    client.once('close', () => upstream.destroy())
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    if (head.length) upstream.write(head)
    client.pipe(upstream).pipe(client)
  }

  const forward = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    headersDone(req.socket)
    const who = await admit(req)
    if (!who.ok) return answer(res, who.status, who.reason)
    let url: URL | undefined
    try {
      url = req.url?.startsWith('http://') ? new URL(req.url) : undefined
    } catch {
      // answered below
    }
    if (!url) return answer(res, 400, 'this is a proxy: send absolute http:// URLs, or CONNECT host:port for HTTPS and other TCP')
    const port = url.port ? Number(url.port) : 80
    if (isGatewayHost(url.hostname)) return serveGateway(req, res, port, who)
    const upstream = await open(who, url.hostname, port, (status, message) => answer(res, status, message))
    if (!upstream) return
    if (req.socket.destroyed) return void upstream.destroy()
    const out = httpRequest({
      method: req.method,
      path: `${url.pathname}${url.search}`,
      headers: ['Host', url.host, ...endToEnd(req.rawHeaders, ['host'])],
      setHost: false,
      createConnection: () => upstream,
    })
    out.setTimeout(options.idleTimeoutMs, () => out.destroy())
    out.on('error', (e) => answer(res, 502, `${url.host} failed: ${(e as NodeJS.ErrnoException).code ?? e.message}`))
    out.on('response', (up) => {
      res.writeHead(up.statusCode ?? 502, up.statusMessage, [...endToEnd(up.rawHeaders), 'Connection', 'close'])
      up.on('error', () => res.destroy())
      up.pipe(res)
    })
    req.socket.once('close', () => out.destroy())
    req.pipe(out)
  }

  /** A request for the model gateway: its handler, or a refusal; never a DNS query or a connection out. */
  const serveGateway = async (req: IncomingMessage, res: ServerResponse, port: number, who: Admitted | undefined): Promise<void> => {
    const client = who?.client
    const gateway = gatewayOf(who)
    if (!gateway?.handler) {
      const reason = gateway ? 'no model gateway is configured on this codebox server' : gatewayRefusal
      options.onDecision({ host: GATEWAY_HOST, port, allowed: false, reason, ...(client === undefined ? {} : { client }) })
      return answer(res, gateway ? 502 : 403, reason)
    }
    options.onDecision({ host: GATEWAY_HOST, port, allowed: true, ...(client === undefined ? {} : { client }) })
    // One request per connection, as for every answer here (HTTP/2: one connection, many streams); the gateway keeps its own upstream timeouts.
    if (req.httpVersionMajor === 1) {
      res.shouldKeepAlive = false
      req.socket.setTimeout(0)
    }
    try {
      await gateway.handler(req, res, gateway.identity)
    } catch {
      answer(res, 502, 'the model gateway failed on this request')
    }
  }

  /**
   * CONNECT to the gateway: only to port 80, for clients that tunnel plain HTTP too (Node's fetch
   * with NODE_USE_ENV_PROXY); the tunnel's requests go to the gateway. TLS (443) is refused: the
   * gateway is plain HTTP inside the sandbox, TLS to the provider starts on the host.
   */
  const gatewayTunnel = (client: net.Socket, head: Buffer, port: number, admitted: Admitted): void => {
    const gateway = gatewayOf(admitted)
    const who = admitted.client
    let refusal: [number, string] | undefined
    if (!gateway) refusal = [403, gatewayRefusal]
    else if (port !== 80)
      refusal = [
        400,
        `the model gateway speaks plain HTTP inside the sandbox: use http://${GATEWAY_HOST}/... (TLS to the provider starts on the host), not https`,
      ]
    else if (!gateway.handler) refusal = [502, 'no model gateway is configured on this codebox server']
    if (refusal) {
      options.onDecision({ host: GATEWAY_HOST, port, allowed: false, reason: refusal[1], ...(who === undefined ? {} : { client: who }) })
      return answerRaw(client, refusal[0], refusal[1])
    }
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    tunnelClients.set(client, admitted)
    byPreface(client, head, admitted)
  }

  /** The gateway a client may use: the handler with its identity, or undefined (refused). */
  const gatewayOf = (who: Admitted | undefined): { identity: GatewayIdentity; handler: GatewayHandler | undefined } | undefined =>
    options.gateway && who?.gateway ? { identity: who.gateway, handler: options.gateway.handler } : undefined

  /**
   * A gateway tunnel goes to the HTTP/2 server when it starts with HTTP/2's connection preface
   * (prior knowledge, as the AWS SDK for JavaScript speaks to Bedrock), to the HTTP/1.1 one
   * otherwise; its first bytes are put back for the server that takes it.
   */
  const byPreface = (client: net.Socket, head: Buffer, admitted: Admitted): void => {
    let got = head
    const decide = (): void => {
      const n = Math.min(got.length, H2_PREFACE.length)
      const h2 = got.subarray(0, n).equals(H2_PREFACE.subarray(0, n))
      if (n === 0 || (h2 && n < H2_PREFACE.length)) return
      client.off('data', more)
      client.pause()
      client.unshift(got)
      if (h2) {
        // The HTTP/2 server makes the connection's session at once ('session'), which takes this client.
        handingOver = admitted
        tunneled2.emit('connection', client)
        handingOver = undefined
        return
      }
      // The HTTP/1.1 server reads what is buffered once the socket flows again.
      tunneled.emit('connection', client)
      client.resume()
    }
    const more = (d: Buffer): void => {
      got = Buffer.concat([got, d])
      decide()
    }
    client.on('data', more)
    decide()
  }

  const http = createServer({ maxHeaderSize: options.maxHeaderBytes, requestTimeout: 0, requireHostHeader: false })
  http.maxHeadersCount = 100
  http.on('request', (req: IncomingMessage, res: ServerResponse) => void forward(req, res).catch(() => res.destroy()))
  http.on('connect', (req: IncomingMessage, client: net.Socket, head: Buffer) => void tunnel(req, client, head).catch(() => client.destroy()))
  http.on('upgrade', (_req: IncomingMessage, client: net.Socket) => answerRaw(client, 400, 'upgrades are not proxied; use CONNECT'))
  const clientError = (e: NodeJS.ErrnoException, client: net.Socket): void => {
    const status = e.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400
    answerRaw(client, status, status === 431 ? `request headers over ${options.maxHeaderBytes} bytes` : `malformed request (${e.code ?? 'parse error'})`)
  }
  http.on('clientError', clientError)
  // Requests inside a CONNECT tunnel to the gateway: origin-form, all for the gateway.
  const tunneled = createServer({ maxHeaderSize: options.maxHeaderBytes, requestTimeout: 0, requireHostHeader: false })
  tunneled.maxHeadersCount = 100
  tunneled.on('request', (req: IncomingMessage, res: ServerResponse) => {
    req.url = `http://${GATEWAY_HOST}${req.url?.startsWith('/') ? req.url : '/'}`
    void serveGateway(req, res, 80, tunnelClients.get(req.socket)).catch(() => res.destroy())
  })
  tunneled.on('clientError', clientError)
  // The same inside an HTTP/2 tunnel: every stream a request for the gateway.
  const tunneled2 = http2.createServer({ settings: { maxConcurrentStreams: 32, maxHeaderListSize: options.maxHeaderBytes } })
  tunneled2.on('request', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    const path = req.url?.startsWith('/') ? req.url : '/'
    // The compat objects stand in for HTTP/1's: the gateway reads url, method, headers and the body, and writes the answer.
    Object.defineProperty(req, 'url', { value: `http://${GATEWAY_HOST}${path}`, writable: true })
    void serveGateway(req as unknown as IncomingMessage, res as unknown as ServerResponse, 80, tunnelClients.get(req.stream.session!)).catch(() =>
      res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR),
    )
  })
  tunneled2.on('sessionError', () => {})
  tunneled2.on('session', (session) => {
    if (handingOver) tunnelClients.set(session, handingOver)
    session.on('error', () => session.destroy())
  })

  const server = net.createServer((client) => {
    client.on('error', () => client.destroy())
    // Refused connections count too while they linger, and past twice the cap get no answer:
    // a flood of connections must not cost the host more than a bounded number of fds.
    if (clients.size >= 2 * options.maxConnections) return void client.destroy()
    clients.add(client)
    client.once('close', () => clients.delete(client))
    if (clients.size > options.maxConnections) {
      return answerRaw(client, 503, `this session already has ${options.maxConnections} connections open through the proxy`)
    }
    client.setTimeout(options.idleTimeoutMs, () => client.destroy())
    const deadline = setTimeout(() => answerRaw(client, 408, `no complete request headers within ${options.headerTimeoutMs} ms`), options.headerTimeoutMs)
    deadline.unref()
    headerDeadlines.set(client, deadline)
    client.once('close', () => clearTimeout(deadline))
    http.emit('connection', client)
  })

  return {
    server,
    close() {
      server.close()
      for (const c of clients) c.destroy()
    },
  }
}
