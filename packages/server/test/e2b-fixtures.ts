/**
 * A real codebox server (bwrap driver) that the unmodified E2B SDKs reach the way an E2B user
 * points them: `E2B_API_URL` and `E2B_SANDBOX_URL` set to its URL (put back afterwards), and a
 * codebox API key per tenant. Call inside a `describe`: it adds the suite's before and after hooks.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before } from 'node:test'
import type { RunningServer } from '@codebox/server'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'
import { realServer } from './fixtures.ts'

export interface E2bServer {
  /** Why the suite cannot run here (no bwrap), once `before` ran; then nothing else is set. */
  readonly skip: string | undefined
  readonly server: RunningServer
  /** The API key of each tenant asked for. */
  readonly keys: Record<string, string>
}

export function e2bServer(options: { name: string; tenants: string[]; env?: Record<string, string> }): E2bServer {
  const state: { skip?: string; server?: RunningServer; keys: Record<string, string>; work?: string } = { keys: {} }
  const saved = { api: process.env.E2B_API_URL, sandbox: process.env.E2B_SANDBOX_URL }
  before(async () => {
    state.skip = await bwrapUnavailable()
    if (state.skip) return
    state.work = await mkdtemp(path.join(tmpdir(), `codebox-${options.name}-`))
    state.server = await realServer(state.work, options.env)
    for (const tenant of options.tenants) state.keys[tenant] = (await state.server.store.keys.create({ tenant })).secret
    process.env.E2B_API_URL = state.server.url
    process.env.E2B_SANDBOX_URL = state.server.url
  })
  after(async () => {
    await state.server?.close()
    if (state.work) await rm(state.work, { recursive: true, force: true })
    restore('E2B_API_URL', saved.api)
    restore('E2B_SANDBOX_URL', saved.sandbox)
  })
  return {
    get skip() {
      return state.skip
    },
    get server() {
      if (!state.server) throw new Error('the E2B test server is not running (skipped, or before() failed)')
      return state.server
    },
    keys: state.keys,
  }
}

function restore(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name]
  else process.env[name] = value
}
