import type { FastifyRequest } from 'fastify'
import type { Session } from '@codebox/sandbox'
import type { Caller, SessionService } from '../../services/sessions.ts'

/** The E2B sandbox a request to envd or the code interpreter is for: header E2b-Sandbox-Id, checked against X-Access-Token. */
export interface E2bSandbox {
  caller: Caller
  sessionId: string
  session: Session
  /** What every process and cell of the sandbox gets: `E2B_SANDBOX=true`, `E2B_SANDBOX_ID`, and its own variables (`Sandbox.create({envs})`); read when one starts. */
  envs(): Promise<Record<string, string>>
}

export interface E2bDeps {
  sessions: SessionService
  /** The live session a sandbox request names: NotFound (unknown, foreign or ended), Unauthorized (bad or missing access token). */
  sandboxOf(request: FastifyRequest): Promise<E2bSandbox>
}
