/**
 * The model gateway's side of the egress proxy: the reserved host name sandbox clients use to
 * reach it, who a request came from (the listener it arrived on), and the handler the host's
 * server gives the egress service. The proxy hands a plain-HTTP request for the reserved name to
 * that handler instead of connecting out; the name is never resolved.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { validationError } from '@codebox/core'

/** The reserved host name of the model gateway inside sandboxes (`http://codebox-gateway/...`). */
export const GATEWAY_HOST = 'codebox-gateway'

/** The gateway's base URL inside a sandbox, through the egress proxy (clients that honour HTTP_PROXY). */
export const GATEWAY_URL = `http://${GATEWAY_HOST}`

/**
 * The gateway's own port inside a sandbox that uses it (executor/egress_relay.py): plain TCP on
 * loopback, each connection tunnelled to the gateway, so clients that ignore proxy variables (the
 * AWS SDK for JavaScript) reach it too, over HTTP/1.1 or HTTP/2 cleartext.
 */
export const GATEWAY_PORT = 3129

/** The base URL the sandbox's clients are given: the loopback port, reached by every client. */
export const GATEWAY_BASE_URL = `http://127.0.0.1:${GATEWAY_PORT}`

/** Who a gateway request came from: known by the listener it arrived on, never by what the sandbox says. */
export interface GatewayIdentity {
  /** The sandbox (and the socket) the request came through. */
  sandboxId: string
  sessionId?: string
  /** The opaque label the session's starter attached (a runtime id), if any. */
  tag?: string
}

/**
 * Serves one gateway request. `req.url` is the absolute URI the client sent
 * (`http://codebox-gateway/anthropic/v1/messages`); the response carries `Connection: close`
 * (one request per proxy connection). The request's body is unread: bounding it is the handler's
 * job. A rejection is answered 502 when nothing was sent yet.
 */
export type GatewayHandler = (req: IncomingMessage, res: ServerResponse, identity: GatewayIdentity) => void | Promise<void>

/** Whether a host a client named is the gateway's (any case, with or without the root dot). */
export function isGatewayHost(host: string): boolean {
  return host.toLowerCase().replace(/\.$/, '') === GATEWAY_HOST
}

/**
 * The environment that points a sandbox's clients at the gateway: base URLs of the model
 * providers and of codebox's own APIs (`/agentcore`: the AgentCore code interpreter API, `/codebox`:
 * the native API; served as the session's tenant, for hosted agents), and placeholder credentials
 * the gateway drops. No secret. All on the loopback port (GATEWAY_BASE_URL, the executor's relay),
 * on one host and in a kubernetes pod alike.
 */
export function gatewayEnv(): Record<string, string> {
  const base = GATEWAY_BASE_URL
  return {
    CODEBOX_GATEWAY_URL: base,
    CODEBOX_GATEWAY_PORT: String(GATEWAY_PORT),
    ANTHROPIC_BASE_URL: `${base}/anthropic`,
    OPENAI_BASE_URL: `${base}/openai/v1`,
    AWS_ENDPOINT_URL_BEDROCK_RUNTIME: `${base}/bedrock`,
    AWS_ENDPOINT_URL_BEDROCK_AGENTCORE: `${base}/agentcore`,
    CODEBOX_URL: `${base}/codebox`,
    // SDKs refuse to start without a key; these are no secrets: the gateway removes them and adds the operator's.
    ANTHROPIC_API_KEY: 'codebox-gateway',
    OPENAI_API_KEY: 'codebox-gateway',
    AWS_ACCESS_KEY_ID: 'codebox-gateway',
    AWS_SECRET_ACCESS_KEY: 'codebox-gateway-placeholder-not-a-secret',
    AWS_REGION: 'us-east-1',
    AWS_DEFAULT_REGION: 'us-east-1',
  }
}

/** A gateway tag: 1-256 printable ASCII characters without spaces (a runtime id or ARN). Throws a ValidationError. */
export function checkGatewayTag(tag: unknown, field = 'gateway.tag'): string {
  if (typeof tag !== 'string' || !/^[\x21-\x7e]{1,256}$/.test(tag)) throw validationError(field, 'must be 1-256 printable ASCII characters without spaces')
  return tag
}
