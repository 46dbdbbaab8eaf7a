/**
 * The AgentCore Runtime contract on the codebox server (seed 002): `POST /invocations` (JSON or
 * SSE) and the `/ws` WebSocket, both doors onto the agent service. `GET /ping` lives with the
 * other operations (routes/ops.ts) and reports agent turns as busy.
 */
import type { FastifyInstance } from 'fastify'
import type { Authenticator } from '../../http/auth.ts'
import type { RouteRegistry } from '../../http/route.ts'
import type { AgentDoor } from '../../services/agent-door.ts'
import { invocationRoutes } from './invocations.ts'
import { runtimeWsRoutes } from './ws.ts'

export { clientGone, collectTurn, invocationResponse, openTurn, streamTurn, wantsEventStream, SESSION_HEADER, USER_HEADER } from './turn-reply.ts'

/** Registers `/invocations` and `/ws`. */
export async function runtimeRoutes(app: FastifyInstance, registry: RouteRegistry, options: { agent: AgentDoor; auth: Authenticator }): Promise<void> {
  invocationRoutes(app, registry, options.agent)
  await app.register(async (scope) => runtimeWsRoutes(scope, options.auth, options.agent))
}
