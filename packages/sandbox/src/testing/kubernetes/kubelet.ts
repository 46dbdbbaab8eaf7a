/**
 * The kubelet simulator: a new pod is scheduled onto the one fake node (spec.nodeName), then
 * Running with a pod IP, Ready conditions and containerStatuses. With `run`, the pod's first
 * container is a real local process (container.ts): its exit makes the pod Succeeded or Failed,
 * `activeDeadlineSeconds` kills it (Failed, DeadlineExceeded), a graceful deletion sends SIGTERM
 * and SIGKILL at the grace period's end, then removes the pod. A pod's init containers run first,
 * one after the other, each a process of its own (`run` is asked for each): the pod has its IP and
 * stays Pending (Initialized False, initContainerStatuses running, then terminated Completed)
 * until the last one exits 0; one that fails fails the pod, as under restartPolicy Never. Pod IPs
 * route nowhere: the driver reaches a pod through `dial`, which connects to
 * `<socketDir>/<port>.sock` in the pod's own directory (the process listens there); a pod
 * declaring container ports is Ready only once every one of those sockets exists, as a readiness
 * probe would say. With `podNetwork: 'loopback'`
 * pod IPs are loopback addresses (127.244.x.y, which Linux routes to this host without setup) and
 * the kubelet listens on `<podIP>:<port>` for each declared port, forwarding to the pod's socket:
 * then plain `net.connect({host: podIP, port})` reaches a pod from any process, as on a cluster
 * (API replicas run as processes of their own).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { ContainerProcess, type ContainerCommand } from './container.ts'
import { conditions, initStatuses, running, terminated, waiting } from './pod-status.ts'
import { findResource } from './resources.ts'
import { timestamp, type KubeObject, type ObjectStore, type StoreEvent } from './store.ts'

/** The pod a `run` callback is asked about. */
export interface KubeletPod {
  namespace: string
  name: string
  uid: string
  podIP: string
  /** The directory the process listens in: port P is `<socketDir>/<P>.sock`. */
  socketDir: string
  pod: KubeObject
  /** The container to run: one of the pod's initContainers (`init`) or its first container. */
  container: string
  init: boolean
}

/** How the kubelet simulator behaves (all delays in milliseconds). */
export interface KubeletOptions {
  /** The node pods are scheduled onto (default "fake-node-1"). */
  nodeName?: string
  /** From creation to spec.nodeName (default 5). */
  scheduleDelayMs?: number
  /** From scheduling to Running (default 10). */
  startDelayMs?: number
  /** How long a pod without a process takes to stop once deleted, at most its grace period (default 10). */
  stopDelayMs?: number
  /** The process to run for a pod; undefined (or no `run`) simulates a container that runs until stopped. */
  run?: (pod: KubeletPod) => ContainerCommand | undefined
  /** Where pod socket directories go (default: a new directory under the OS tmpdir, removed on stop). */
  socketRoot?: string
  /** The tail of a process's output kept for pods/log (default 64 KiB). */
  maxLogBytes?: number
  /** `unroutable` (default): pod IPs in 10.244/16, reached only through `dial`. `loopback`: see above. */
  podNetwork?: 'unroutable' | 'loopback'
}

interface PodRuntime {
  ns: string
  name: string
  uid: string
  ip: string
  socketDir: string
  /** The container process running now (an init container's, then the first container's). */
  process: ContainerProcess | undefined
  /** Every container process the pod had, by container name (for pods/log). */
  processes: Map<string, ContainerProcess>
  /** Set once the pod has its IP (its sandbox exists). */
  started: boolean
  /** While an init container runs. */
  initializing: boolean
  startedAt: string
  startedMs: number
  terminating: boolean
  finished: boolean
  timers: Set<NodeJS.Timeout>
  /** podNetwork 'loopback': the listeners on the pod's IP. */
  forwarders: net.Server[]
}

type ContainerSpec = { name: string; image: string; ports?: { containerPort?: number }[]; env?: { name: string; value?: string; valueFrom?: unknown }[] }
type PodSpec = {
  nodeName?: string
  activeDeadlineSeconds?: number
  initContainers?: ContainerSpec[]
  containers: ContainerSpec[]
}
const pods = findResource('', 'v1', 'pods')!
const DEADLINE_EXCEEDED = { reason: 'DeadlineExceeded', message: 'Pod was active on the node longer than the specified deadline' }
const specOf = (p: KubeObject): PodSpec => p.spec as PodSpec

/** Runs pods of an ObjectStore on one fake node. */
export class Kubelet {
  readonly nodeName: string
  readonly #store: ObjectStore
  readonly #options: KubeletOptions
  readonly #runtimes = new Map<string, PodRuntime>()
  readonly #byIp = new Map<string, PodRuntime>()
  readonly #scheduling = new Set<string>()
  readonly #timers = new Set<NodeJS.Timeout>()
  readonly #socketRoot: string
  readonly #ownsRoot: boolean
  readonly #unsubscribe: () => void
  #nextIp = 2
  #stopped = false

  constructor(store: ObjectStore, options: KubeletOptions = {}) {
    this.#store = store
    this.#options = options
    this.nodeName = options.nodeName ?? 'fake-node-1'
    this.#ownsRoot = options.socketRoot === undefined
    this.#socketRoot = options.socketRoot ?? mkdtempSync(path.join(os.tmpdir(), 'kfake-'))
    if (this.#socketRoot.length + 60 > 107) throw new Error(`socketRoot ${this.#socketRoot} is too long for unix socket paths (keep it under 47 characters)`)
    // Handled after the write that caused it: a write from inside a listener would reach
    // watches before the event they are still being sent.
    this.#unsubscribe = store.subscribe((e) => queueMicrotask(() => this.#onEvent(e)))
  }

  #later(ms: number, fn: () => void, timers: Set<NodeJS.Timeout> = this.#timers): void {
    const timer = setTimeout(() => {
      timers.delete(timer)
      if (!this.#stopped) fn()
    }, ms)
    timers.add(timer)
  }

  #onEvent(e: StoreEvent): void {
    if (e.resource !== pods || this.#stopped) return
    const pod = e.object
    const rt = this.#runtimes.get(pod.metadata.uid)
    if (e.type === 'DELETED') {
      if (rt) this.#forget(rt)
      return
    }
    const nodeName = specOf(pod).nodeName
    if (!nodeName) {
      if (!this.#scheduling.has(pod.metadata.uid) && !pod.metadata.deletionTimestamp) {
        this.#scheduling.add(pod.metadata.uid)
        this.#later(this.#options.scheduleDelayMs ?? 5, () => this.#bind(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid))
      }
      return
    }
    if (nodeName !== this.nodeName) return
    if (pod.metadata.deletionTimestamp) {
      if (rt) this.#terminate(rt, pod.metadata.deletionGracePeriodSeconds ?? 0)
      else this.#later(0, () => this.#removeNow(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid))
      return
    }
    if (!rt) this.#admit(pod)
  }

  /** The current pod if it is still the one with `uid`. */
  #current(ns: string, name: string, uid: string): KubeObject | undefined {
    const pod = this.#store.find(pods, ns, name)
    return pod?.metadata.uid === uid ? pod : undefined
  }

  #bind(ns: string, name: string, uid: string): void {
    this.#scheduling.delete(uid)
    const pod = this.#current(ns, name, uid)
    if (!pod || pod.metadata.deletionTimestamp || specOf(pod).nodeName) return
    const bound = this.#store.replace(pods, ns, name, { ...pod, spec: { ...specOf(pod), nodeName: this.nodeName } })
    this.#setStatus(bound, { conditions: [{ type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: timestamp() }] })
  }

  #setStatus(pod: KubeObject, status: Record<string, unknown>): void {
    const cur = this.#current(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid)
    if (!cur) return
    this.#store.replace(pods, cur.metadata.namespace, cur.metadata.name, { ...cur, status: { ...(cur.status as object), ...status } }, 'status')
  }

  #admit(pod: KubeObject): void {
    const { namespace: ns, name, uid } = pod.metadata
    const n = this.#nextIp++
    const ip = this.#options.podNetwork === 'loopback' ? `127.244.${(n >> 8) & 255}.${n & 255}` : `10.244.${(n >> 8) & 255}.${n & 255}`
    const socketDir = path.join(this.#socketRoot, uid)
    mkdirSync(socketDir, { mode: 0o700 })
    const rt: PodRuntime = {
      ns,
      name,
      uid,
      ip,
      socketDir,
      process: undefined,
      processes: new Map(),
      started: false,
      initializing: false,
      startedAt: timestamp(),
      startedMs: Date.now(),
      terminating: false,
      finished: false,
      timers: new Set(),
      forwarders: [],
    }
    this.#runtimes.set(uid, rt)
    this.#byIp.set(ip, rt)
    const { containers, initContainers = [] } = specOf(pod)
    this.#setStatus(pod, {
      phase: 'Pending',
      hostIP: '10.0.0.1',
      startTime: rt.startedAt,
      ...(initContainers.length > 0 ? { initContainerStatuses: waiting(initContainers, 'PodInitializing') } : {}),
      containerStatuses: waiting(containers, initContainers.length > 0 ? 'PodInitializing' : 'ContainerCreating'),
    })
    this.#later(this.#options.startDelayMs ?? 10, () => this.#start(rt), rt.timers)
  }

  /** Starts the container's process (when `run` gives one): whether there is one. */
  #spawn(pod: KubeObject, rt: PodRuntime, container: ContainerSpec, init: boolean): boolean {
    const kpod: KubeletPod = { namespace: rt.ns, name: rt.name, uid: rt.uid, podIP: rt.ip, socketDir: rt.socketDir, pod, container: container.name, init }
    const cmd = this.#options.run?.(kpod)
    if (!cmd) return false
    const child = new ContainerProcess(cmd, this.#env(container, rt), this.#options.maxLogBytes ?? 64 * 1024)
    rt.process = child
    rt.processes.set(container.name, child)
    void child.exited.then((exit) => (init ? this.#initExited(rt, exit.exitCode, exit.signal) : this.#exited(rt, exit.exitCode, exit.signal)))
    return true
  }

  #env(container: ContainerSpec, rt: PodRuntime): Record<string, string> {
    const env: Record<string, string> = { FAKE_POD_SOCKET_DIR: rt.socketDir }
    const fields: Record<string, string> = {
      'metadata.name': rt.name,
      'metadata.namespace': rt.ns,
      'metadata.uid': rt.uid,
      'status.podIP': rt.ip,
      'spec.nodeName': this.nodeName,
    }
    for (const e of container.env ?? []) {
      if (typeof e.value === 'string') env[e.name] = e.value
      const ref = (e.valueFrom as { fieldRef?: { fieldPath?: string } } | undefined)?.fieldRef?.fieldPath
      if (ref !== undefined && fields[ref] !== undefined) env[e.name] = fields[ref]
    }
    return env
  }

  /**
   * The pod's sandbox is up (its IP, the deadline counting, the loopback forwarders), then its init
   * containers run from `init` on; with none left, its containers.
   */
  #start(rt: PodRuntime, init = 0): void {
    const pod = this.#current(rt.ns, rt.name, rt.uid)
    if (!pod || rt.terminating || rt.finished) return
    const spec = specOf(pod)
    const inits = spec.initContainers ?? []
    const ports = spec.containers.flatMap((c) => (c.ports ?? []).map((p) => p.containerPort)).filter((p): p is number => typeof p === 'number')
    if (!rt.started) {
      rt.started = true
      if (spec.activeDeadlineSeconds !== undefined)
        this.#later(Math.max(0, rt.startedMs + spec.activeDeadlineSeconds * 1000 - Date.now()), () => this.#deadline(rt), rt.timers)
      // A port of the pod is reachable at its IP whichever container listens there now.
      if (this.#options.podNetwork === 'loopback') {
        const all = [...inits, ...spec.containers].flatMap((c) => (c.ports ?? []).map((p) => p.containerPort)).filter((p): p is number => typeof p === 'number')
        for (const port of new Set(all)) this.#forward(rt, port)
      }
    }
    const network = { podIP: rt.ip, podIPs: [{ ip: rt.ip }] }
    const container = inits[init]
    rt.initializing = container !== undefined
    if (container) {
      this.#setStatus(pod, {
        phase: 'Pending',
        ...network,
        conditions: conditions(false, false),
        initContainerStatuses: initStatuses(inits, rt.uid, init, rt.startedAt),
      })
      // An init container without a process completes at once.
      if (!this.#spawn(pod, rt, container, true)) this.#later(0, () => this.#start(rt, init + 1), rt.timers)
      return
    }
    const main = spec.containers[0]
    if (main) this.#spawn(pod, rt, main, false)
    this.#setStatus(pod, {
      phase: 'Running',
      ...network,
      conditions: conditions(false),
      ...(inits.length > 0 ? { initContainerStatuses: initStatuses(inits, rt.uid, inits.length, rt.startedAt) } : {}),
      containerStatuses: running(spec.containers, rt.uid),
    })
    this.#awaitReady(rt, ports)
  }

  /** An init container ended: the next one (or the containers) after a 0, else the pod fails (restartPolicy Never). */
  #initExited(rt: PodRuntime, exitCode: number, signal: NodeJS.Signals | null): void {
    if (this.#stopped || rt.finished) return
    if (rt.terminating) return this.#removeNow(rt.ns, rt.name, rt.uid)
    const pod = this.#current(rt.ns, rt.name, rt.uid)
    if (!pod) return
    const inits = specOf(pod).initContainers ?? []
    const index = inits.findIndex((c) => rt.processes.get(c.name) === rt.process)
    rt.process = undefined
    if (exitCode === 0) return this.#start(rt, index + 1)
    this.#end(rt)
    this.#setStatus(pod, {
      phase: 'Failed',
      conditions: conditions(false, false),
      initContainerStatuses: initStatuses(inits, rt.uid, index, rt.startedAt, { exitCode, signal }),
    })
  }

  /**
   * Listens on `<podIP>:<port>` while the pod's socket for that port exists (checked every 20 ms),
   * piping each connection to it: as in a pod, a port nobody listens on yet (a container still
   * starting, between an init container and the next) refuses connections.
   */
  #forward(rt: PodRuntime, port: number): void {
    const socket = path.join(rt.socketDir, `${port}.sock`)
    let server: net.Server | undefined
    const sync = (): void => {
      if (rt.finished || rt.terminating) return
      const up = existsSync(socket)
      if (up && !server) {
        // Half-open both ways, as TCP is: a peer that ends its sending side may still be answered.
        server = net.createServer({ allowHalfOpen: true }, (client) => {
          const upstream = net.connect({ path: socket, allowHalfOpen: true })
          client.on('error', () => upstream.destroy())
          upstream.on('error', () => client.destroy())
          client.pipe(upstream).pipe(client)
        })
        server.on('error', (e) => this.#log(`pod ${rt.name}: cannot listen on ${rt.ip}:${port}: ${e.message}`))
        server.listen(port, rt.ip)
        rt.forwarders.push(server)
      } else if (!up && server) {
        const gone = server
        server = undefined
        rt.forwarders.splice(rt.forwarders.indexOf(gone), 1)
        gone.close()
      }
      this.#later(20, sync, rt.timers)
    }
    sync()
  }

  #log(line: string): void {
    process.stderr.write(`fake kubelet: ${line}\n`)
  }

  #closeForwarders(rt: PodRuntime): void {
    for (const server of rt.forwarders.splice(0)) server.close()
  }

  /** Ready once each declared port's socket exists (checked every 20 ms while the pod runs). */
  #awaitReady(rt: PodRuntime, ports: number[]): void {
    if (rt.terminating || rt.finished) return
    if (rt.process && !ports.every((p) => existsSync(path.join(rt.socketDir, `${p}.sock`)))) {
      this.#later(20, () => this.#awaitReady(rt, ports), rt.timers)
      return
    }
    const pod = this.#current(rt.ns, rt.name, rt.uid)
    if (!pod) return
    const statuses = (pod.status as { containerStatuses?: Record<string, unknown>[] }).containerStatuses ?? []
    this.#setStatus(pod, { conditions: conditions(true), containerStatuses: statuses.map((c) => ({ ...c, ready: true })) })
  }

  /** The pod has ended: no more timers, nothing listens on its IP. */
  #end(rt: PodRuntime): void {
    rt.finished = true
    this.#closeForwarders(rt)
    for (const timer of rt.timers) clearTimeout(timer)
    rt.timers.clear()
  }

  #finish(rt: PodRuntime, phase: 'Succeeded' | 'Failed', exitCode: number, extra: Record<string, unknown> = {}, signal: NodeJS.Signals | null = null): void {
    if (rt.finished) return
    this.#end(rt)
    const pod = this.#current(rt.ns, rt.name, rt.uid)
    if (!pod) return
    const statuses = (pod.status as { containerStatuses?: Record<string, unknown>[] }).containerStatuses ?? []
    this.#setStatus(pod, { phase, ...extra, conditions: conditions(false), containerStatuses: terminated(statuses, exitCode, signal, rt.startedAt) })
  }

  #exited(rt: PodRuntime, exitCode: number, signal: NodeJS.Signals | null): void {
    if (this.#stopped) return
    if (rt.terminating) this.#removeNow(rt.ns, rt.name, rt.uid)
    else this.#finish(rt, exitCode === 0 ? 'Succeeded' : 'Failed', exitCode, {}, signal)
  }

  #deadline(rt: PodRuntime): void {
    rt.process?.signal('SIGKILL')
    if (rt.initializing) {
      // The containers never started: only the pod says why it ended.
      if (rt.finished) return
      this.#end(rt)
      const pod = this.#current(rt.ns, rt.name, rt.uid)
      if (pod) this.#setStatus(pod, { phase: 'Failed', ...DEADLINE_EXCEEDED, conditions: conditions(false, false) })
      return
    }
    this.#finish(rt, 'Failed', 137, DEADLINE_EXCEEDED, 'SIGKILL')
  }

  /** A graceful deletion: SIGTERM now, SIGKILL when the grace period is over, then the pod is removed. */
  #terminate(rt: PodRuntime, graceSeconds: number): void {
    if (rt.terminating) return
    rt.terminating = true
    for (const timer of rt.timers) clearTimeout(timer)
    rt.timers.clear()
    if (rt.process && !rt.finished) {
      rt.process.signal('SIGTERM')
      this.#later(graceSeconds * 1000, () => rt.process?.signal('SIGKILL'), rt.timers)
    } else this.#later(Math.min(this.#options.stopDelayMs ?? 10, graceSeconds * 1000), () => this.#removeNow(rt.ns, rt.name, rt.uid), rt.timers)
  }

  #removeNow(ns: string, name: string, uid: string): void {
    if (!this.#current(ns, name, uid)) return
    try {
      this.#store.delete(pods, ns, name, { gracePeriodSeconds: 0, preconditions: { uid } })
    } catch {
      // a client removed or replaced it meanwhile
    }
  }

  #forget(rt: PodRuntime): void {
    rt.process?.signal('SIGKILL')
    this.#closeForwarders(rt)
    for (const timer of rt.timers) clearTimeout(timer)
    this.#runtimes.delete(rt.uid)
    this.#byIp.delete(rt.ip)
    const dir = rt.socketDir
    void (rt.process?.exited ?? Promise.resolve()).then(() => rmSync(dir, { recursive: true, force: true }))
  }

  /** The socket directory of a pod by its IP (undefined for an unknown or gone pod). */
  socketDirOf(podIP: string): string | undefined {
    return this.#byIp.get(podIP)?.socketDir
  }

  /** The captured output of a pod's container (default its first container). */
  log(ns: string, name: string, container?: string): string | undefined {
    for (const rt of this.#runtimes.values()) {
      if (rt.ns !== ns || rt.name !== name) continue
      const pod = this.#current(rt.ns, rt.name, rt.uid)
      const which = container ?? (pod ? specOf(pod).containers[0]?.name : undefined)
      return which === undefined ? undefined : rt.processes.get(which)?.log()
    }
    return undefined
  }

  /**
   * The dialer seam: connects to `port` of the pod whose IP is `host`, as `net.connect({host,
   * port})` would on a cluster. An IP that belongs to no running pod fails with EHOSTUNREACH.
   */
  dial(options: { host: string; port: number }): net.Socket {
    const rt = this.#byIp.get(options.host)
    if (!rt || rt.finished || !Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
      const socket = new net.Socket()
      const err = Object.assign(new Error(`connect EHOSTUNREACH ${options.host}:${options.port} (no running fake pod has this IP and port)`), {
        code: 'EHOSTUNREACH',
      })
      process.nextTick(() => socket.destroy(err))
      return socket
    }
    return net.connect({ path: path.join(rt.socketDir, `${options.port}.sock`) })
  }

  /** Kills every process, waits for them (at most 5 s), removes the socket directories. */
  async stop(): Promise<void> {
    this.#stopped = true
    this.#unsubscribe()
    for (const timer of this.#timers) clearTimeout(timer)
    const exits: Promise<unknown>[] = []
    for (const rt of this.#runtimes.values()) {
      for (const timer of rt.timers) clearTimeout(timer)
      rt.process?.signal('SIGKILL')
      this.#closeForwarders(rt)
      if (rt.process) exits.push(rt.process.exited)
    }
    await Promise.race([Promise.all(exits), new Promise((r) => setTimeout(r, 5000).unref())])
    this.#runtimes.clear()
    this.#byIp.clear()
    if (this.#ownsRoot) rmSync(this.#socketRoot, { recursive: true, force: true })
  }
}
