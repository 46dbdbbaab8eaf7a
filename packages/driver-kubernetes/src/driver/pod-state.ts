/**
 * What the kubernetes driver reads from a sandbox pod's status. A pod's status is written by the
 * kubelet, but its log and its container's termination message come from the sandbox, and a
 * compromised node could write anything: every field is validated and bounded here before the
 * driver acts on it or puts it in a message.
 */
import net from 'node:net'
import type { V1ContainerStatus, V1Pod } from '@kubernetes/client-node'
import type { SandboxExit } from '@codebox/core'

/** Where a pod stands, as far as the driver cares. */
export type PodState =
  { kind: 'starting'; why: string } | { kind: 'ready'; podIP: string } | { kind: 'finished'; exit: SandboxExit; why: string } | { kind: 'terminating' }

/** Waiting reasons a pod does not recover from by waiting longer: the start fails at once. */
const FATAL_WAITING = new Set(['ErrImageNeverPull', 'InvalidImageName', 'CreateContainerConfigError', 'CreateContainerError', 'RunContainerError'])

/** At most `max` characters of `value` with control characters replaced: safe to put in a message. */
export function clean(value: unknown, max = 200): string {
  if (typeof value !== 'string') return ''
  const text = value.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ').trim()
  return text.length > max ? `${text.slice(0, max)}…` : text
}

/** The last `maxBytes` of a log as printable text, at most `maxLines` lines. */
export function logTail(log: unknown, maxBytes = 2048, maxLines = 20): string {
  if (typeof log !== 'string' || log === '') return ''
  const tail = log.length > maxBytes ? log.slice(-maxBytes) : log
  return tail
    .split('\n')
    .slice(-maxLines)
    .map((l) => l.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, ' '))
    .join('\n')
    .trim()
}

const int = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) ? v : undefined)

/** The executor container's status (the pod has one container). */
function executorStatus(pod: V1Pod): V1ContainerStatus | undefined {
  const statuses = pod.status?.containerStatuses
  if (!Array.isArray(statuses)) return undefined
  return statuses.find((s) => s?.name === 'executor') ?? statuses[0]
}

/** How a finished pod's container ended: its exit code (a signal when above 128). */
export function exitOf(pod: V1Pod): SandboxExit {
  const terminated = executorStatus(pod)?.state?.terminated
  const code = int(terminated?.exitCode)
  if (code === undefined || code < 0 || code > 255) return { code: null, signal: 'SIGKILL' }
  if (code > 128) return { code: null, signal: signalName(code - 128) }
  return { code, signal: null }
}

const SIGNALS: Record<number, string> = { 1: 'SIGHUP', 2: 'SIGINT', 6: 'SIGABRT', 9: 'SIGKILL', 15: 'SIGTERM' }
const signalName = (n: number): string => SIGNALS[n] ?? `SIG${n}`

/** Why a pod is where it is, in a few words: its phase, reason, and its container's state. */
export function describePod(pod: V1Pod): string {
  const parts: string[] = [clean(pod.status?.phase, 40) || 'no phase']
  const reason = clean(pod.status?.reason, 80)
  if (reason) parts.push(reason)
  const message = clean(pod.status?.message)
  if (message) parts.push(message)
  // An init container (the code receiver) that runs, or failed: the pod waits on it, or ended by it.
  for (const init of Array.isArray(pod.status?.initContainerStatuses) ? pod.status.initContainerStatuses.slice(0, 4) : []) {
    const t = init?.state?.terminated
    if (init?.state?.running) parts.push(`init container ${clean(init.name, 63)} running`)
    else if (t && t.exitCode !== 0)
      parts.push(
        `init container ${clean(init.name, 63)} terminated: ${clean(t.reason, 80) || 'no reason'}, exit code ${int(t.exitCode) ?? '?'}${t.message ? ` (${clean(t.message)})` : ''}`,
      )
  }
  const state = executorStatus(pod)?.state
  if (state?.waiting) parts.push(`container waiting: ${clean(state.waiting.reason, 80)}${state.waiting.message ? ` (${clean(state.waiting.message)})` : ''}`)
  if (state?.terminated) {
    const t = state.terminated
    parts.push(`container terminated: ${clean(t.reason, 80) || 'no reason'}, exit code ${int(t.exitCode) ?? '?'}${t.message ? ` (${clean(t.message)})` : ''}`)
  }
  const scheduled = pod.status?.conditions?.find((c) => c?.type === 'PodScheduled')
  if (scheduled?.status === 'False') parts.push(`not scheduled: ${clean(scheduled.reason, 80)} ${clean(scheduled.message)}`.trim())
  return parts.join('; ')
}

/** The pod's IP when it is a valid IPv4 or IPv6 address. */
export function podIPOf(pod: V1Pod): string | undefined {
  const ip = pod.status?.podIP
  return typeof ip === 'string' && net.isIP(ip) !== 0 ? ip : undefined
}

/** Where `pod` stands. */
export function podState(pod: V1Pod): PodState {
  const phase = pod.status?.phase
  if (phase === 'Succeeded' || phase === 'Failed') return { kind: 'finished', exit: exitOf(pod), why: describePod(pod) }
  if (pod.metadata?.deletionTimestamp) return { kind: 'terminating' }
  const waiting = executorStatus(pod)?.state?.waiting
  if (waiting && FATAL_WAITING.has(String(waiting.reason))) return { kind: 'finished', exit: { code: null, signal: null }, why: describePod(pod) }
  if (executorStatus(pod)?.state?.terminated) return { kind: 'finished', exit: exitOf(pod), why: describePod(pod) }
  const ready = pod.status?.conditions?.some((c) => c?.type === 'Ready' && c.status === 'True') ?? false
  const ip = podIPOf(pod)
  if (phase === 'Running' && ready && ip) return { kind: 'ready', podIP: ip }
  return { kind: 'starting', why: describePod(pod) }
}

/**
 * OOM kills Kubernetes recorded for the executor container: its current and last state (restartPolicy
 * is Never, so there is no longer history). A process the kernel OOM-kills inside a container that
 * lives on is not reported by Kubernetes at all.
 */
export function oomKillsOf(pod: V1Pod | undefined): number {
  if (!pod) return 0
  const status = executorStatus(pod)
  let n = 0
  if (status?.state?.terminated?.reason === 'OOMKilled') n++
  if (status?.lastState?.terminated?.reason === 'OOMKilled') n++
  return n
}
