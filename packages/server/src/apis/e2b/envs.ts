/**
 * A sandbox's own environment variables (`Sandbox.create({envs})`, the create body's `envVars`):
 * every process it starts over envd and every `runCode` cell gets them, under what the call itself
 * sets. They are kept with the session's record, sealed (AES-256-GCM under a key derived from the
 * store's sealing key, the tenant bound in), since they often hold credentials: every replica that
 * shares the store reads them back, and the database alone does not show them.
 */
import { validationError } from '@codebox/core'
import type { StoreApi } from '../../store/index.ts'
import { seal, unseal } from '../../store/sealing.ts'

/**
 * At most this many variables, and this many bytes of names and values together: half of what one
 * process may be given (session-tasks.ts), so a command's own envs still fit beside them.
 */
export const maxSandboxEnvs = 128
export const maxSandboxEnvBytes = 32 * 1024

const shellName = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/

/** The create body's `envVars`, checked: shell names (bash cells export them), strings without NUL, bounded. */
export function checkSandboxEnvs(envs: Record<string, string>, field = 'envVars'): Record<string, string> {
  const entries = Object.entries(envs)
  if (entries.length > maxSandboxEnvs) throw validationError(field, `has ${entries.length} variables, more than the ${maxSandboxEnvs} a sandbox may have`)
  let bytes = 0
  for (const [name, value] of entries) {
    if (!shellName.test(name))
      throw validationError(`${field}.${name.slice(0, 64)}`, 'is not a variable name (letters, digits and _, not first a digit, at most 128)')
    if (value.includes('\0')) throw validationError(`${field}.${name}`, 'holds a NUL byte, which no environment can carry')
    bytes += Buffer.byteLength(name) + Buffer.byteLength(value) + 2
  }
  if (bytes > maxSandboxEnvBytes) throw validationError(field, `holds ${bytes} bytes, more than the ${maxSandboxEnvBytes} a sandbox's variables may`)
  return envs
}

export class SandboxEnvs {
  readonly #key: Buffer

  constructor(store: StoreApi) {
    this.#key = store.deriveKey('e2b sandbox envs v1')
  }

  /** What the session record keeps of `envs`: nothing for none. */
  seal(tenant: string, envs: Record<string, string>): string | undefined {
    return Object.keys(envs).length === 0 ? undefined : seal(this.#key, aad(tenant), JSON.stringify(envs))
  }

  /** The variables `seal` kept for a sandbox of `tenant`: {} when there are none. */
  open(tenant: string, sealed: string | undefined, sandboxId: string): Record<string, string> {
    if (sealed === undefined) return {}
    return JSON.parse(unseal(this.#key, aad(tenant), sealed, `the environment of sandbox ${sandboxId}`)) as Record<string, string>
  }
}

const aad = (tenant: string): string => `e2b envs\0${tenant}`
