/**
 * The internal route of the model gateway relayed from the cluster's egress proxy
 * (`/internal/gateway/<path>`, packages/sandbox/src/egress/gateway-relay.ts): a sandbox pod's
 * `http://codebox-gateway/<path>` request, signed by the proxy for the pod's identity. It is
 * answered before Host checks, API keys and body parsing: only a valid relay signature (a key
 * derived from the sealing key the replicas and the proxies share, a time within the window, this
 * method and path) lets it through, and then the request is the gateway's, exactly as one host's
 * egress listener hands it over. Anything else is 403, whatever key it carries; without a shared
 * sealing key (a SQLite store) the route refuses everything.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { CodeboxError } from '@codebox/core'
import { GATEWAY_RELAY_PREFIX, GATEWAY_URL, verifyGatewayRelay, type GatewayHandler } from '@codebox/sandbox'

/** Whether a request's raw URL is on the internal gateway route. */
export function isGatewayRelayUrl(url: string | undefined): boolean {
  return url !== undefined && (url === GATEWAY_RELAY_PREFIX || url.startsWith(`${GATEWAY_RELAY_PREFIX}/`) || url.startsWith(`${GATEWAY_RELAY_PREFIX}?`))
}

export interface GatewayRelayRouteOptions {
  /** gatewayRelayKey(sealing key); undefined: the route refuses everything. */
  key: Buffer | undefined
  handler: GatewayHandler
}

/**
 * Serves a request on the internal route (call it from onRequest for isGatewayRelayUrl): throws a
 * Forbidden CodeboxError when it does not verify, else hands it to the gateway and owns the reply.
 */
export async function serveGatewayRelay(request: FastifyRequest, reply: FastifyReply, options: GatewayRelayRouteOptions): Promise<void> {
  const raw = request.raw
  const path = raw.url ?? ''
  if (!options.key)
    throw new CodeboxError(
      'Forbidden',
      `${GATEWAY_RELAY_PREFIX} serves the cluster's egress proxy only, and this server has no shared sealing key to verify it with`,
    )
  const verdict = verifyGatewayRelay(options.key, { method: raw.method ?? 'GET', path, headers: raw.headers })
  if (!verdict.ok) throw new CodeboxError('Forbidden', `${GATEWAY_RELAY_PREFIX}: ${verdict.reason}`)
  void reply.hijack()
  // What the gateway sees on one host: the absolute URI the sandbox asked for.
  const rest = path.slice(GATEWAY_RELAY_PREFIX.length)
  raw.url = `${GATEWAY_URL}${rest.startsWith('/') ? rest : `/${rest}`}`
  try {
    await options.handler(raw, reply.raw, verdict.identity)
  } catch (e) {
    request.log.error({ err: e }, 'the model gateway failed on a relayed request')
    if (!reply.raw.headersSent) {
      reply.raw.writeHead(502, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' })
      reply.raw.end('codebox gateway: the model gateway failed on this request\n')
    } else reply.raw.destroy()
  }
}
