/**
 * The executor's channel under gVisor: `runsc run` (foreground) hands its stdin, stdout and
 * stderr to the sandbox's first process, so the executor's frames travel over the pipes of the
 * runsc child. The one place that knows this: when the channel becomes a socket, only this
 * function changes.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'

export interface RunscChannel {
  child: ChildProcess
  /** Frames to the executor. */
  input: Writable
  /** Frames from the executor. */
  output: Readable
  /** The executor's stderr and runsc's own messages. */
  diagnostics: Readable
}

/** Starts `runsc <globalArgs> run --bundle <bundle> <id>` with the executor's channel on its stdio. */
export function startRunsc(runsc: string, globalArgs: string[], bundle: string, id: string): RunscChannel {
  const child = spawn(runsc, [...globalArgs, 'run', '--bundle', bundle, id], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
  })
  return { child, input: child.stdin!, output: child.stdout!, diagnostics: child.stderr! }
}
