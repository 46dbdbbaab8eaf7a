/**
 * The pod status the kubelet simulator reports at each step, shaped as a real kubelet's:
 * conditions, and container statuses waiting (ContainerCreating), running, or terminated.
 */
import os from 'node:os'
import { timestamp } from './store.ts'

type Status = Record<string, unknown>
interface Container {
  name: string
  image: string
}

/** The pod conditions once its containers were started; Ready and ContainersReady as given. */
export function conditions(ready: boolean): Status[] {
  const t = timestamp()
  const c = (type: string, ok: boolean): Status => ({ type, status: ok ? 'True' : 'False', lastProbeTime: null, lastTransitionTime: t })
  return [c('PodReadyToStartContainers', true), c('Initialized', true), c('Ready', ready), c('ContainersReady', ready), c('PodScheduled', true)]
}

/** Containers being created. */
export const waiting = (containers: Container[]): Status[] =>
  containers.map((c) => ({
    name: c.name,
    image: c.image,
    imageID: '',
    ready: false,
    restartCount: 0,
    started: false,
    state: { waiting: { reason: 'ContainerCreating' } },
  }))

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
