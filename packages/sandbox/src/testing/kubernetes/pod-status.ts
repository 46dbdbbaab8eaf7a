/**
 * The pod status the kubelet simulator reports at each step, shaped as a real kubelet's:
 * conditions, init container statuses, and container statuses waiting (ContainerCreating,
 * PodInitializing), running, or terminated.
 */
import os from 'node:os'
import { timestamp } from './store.ts'

type Status = Record<string, unknown>
interface Container {
  name: string
  image: string
}

/**
 * The pod conditions once its sandbox exists; Ready and ContainersReady as given. While init
 * containers run (`initialized` false), Initialized, Ready and ContainersReady are False with the
 * reasons a kubelet gives.
 */
export function conditions(ready: boolean, initialized = true): Status[] {
  const t = timestamp()
  const c = (type: string, ok: boolean, reason?: string): Status => ({
    type,
    status: ok ? 'True' : 'False',
    lastProbeTime: null,
    lastTransitionTime: t,
    ...(!ok && reason ? { reason } : {}),
  })
  const notInitialized = initialized ? undefined : 'ContainersNotInitialized'
  return [
    c('PodReadyToStartContainers', true),
    c('Initialized', initialized, notInitialized),
    c('Ready', ready, notInitialized),
    c('ContainersReady', ready, notInitialized),
    c('PodScheduled', true),
  ]
}

/** Containers being created, or (`reason` PodInitializing) waiting for the init containers. */
export const waiting = (containers: Container[], reason = 'ContainerCreating'): Status[] =>
  containers.map((c) => ({
    name: c.name,
    image: c.image,
    imageID: '',
    ready: false,
    restartCount: 0,
    started: false,
    state: { waiting: { reason } },
  }))

/**
 * The init containers' statuses while init container `current` runs (those before it completed;
 * `current` equal to their number: all completed), or when it ended with `failed`.
 */
export function initStatuses(
  containers: Container[],
  uid: string,
  current: number,
  startedAt: string,
  failed?: { exitCode: number; signal: NodeJS.Signals | null },
): Status[] {
  const now = timestamp()
  return containers.map((c, i) => {
    const base = { name: c.name, image: c.image, imageID: '', restartCount: 0, containerID: `fake://${uid}/${c.name}` }
    const ended = (exitCode: number, signal: NodeJS.Signals | null): Status => ({
      ...base,
      ready: exitCode === 0,
      started: false,
      state: {
        terminated: {
          exitCode,
          ...(signal ? { signal: os.constants.signals[signal] } : {}),
          reason: exitCode === 0 ? 'Completed' : 'Error',
          startedAt,
          finishedAt: now,
          containerID: base.containerID,
        },
      },
    })
    if (i < current) return ended(0, null)
    if (i === current && failed) return ended(failed.exitCode, failed.signal)
    if (i === current) return { ...base, ready: false, started: true, state: { running: { startedAt: now } } }
    return { name: c.name, image: c.image, imageID: '', restartCount: 0, ready: false, started: false, state: { waiting: { reason: 'PodInitializing' } } }
  })
}

/** Containers started now (not ready yet). */
export function running(containers: Container[], uid: string): Status[] {
  const startedAt = timestamp()
  return containers.map((c) => ({
    name: c.name,
    image: c.image,
    imageID: '',
    containerID: `fake://${uid}/${c.name}`,
    ready: false,
    restartCount: 0,
    started: true,
    state: { running: { startedAt } },
  }))
}

/** The statuses after the first container ended with `exitCode` (the others are killed: 137). */
export function terminated(statuses: Status[], exitCode: number, signal: NodeJS.Signals | null, startedAt: string): Status[] {
  const finishedAt = timestamp()
  return statuses.map((c, i) => ({
    ...c,
    ready: false,
    started: false,
    state: {
      terminated: {
        exitCode: i === 0 ? exitCode : 137,
        ...(signal ? { signal: os.constants.signals[signal] } : {}),
        reason: exitCode === 0 && i === 0 ? 'Completed' : 'Error',
        startedAt,
        finishedAt,
        containerID: c.containerID,
      },
    },
  }))
}
