// The Node kernel's interrupter: a worker thread that turns the executor's SIGINT (a cancelled
// cell) into an interrupt of the cell even while the main thread is stuck in a busy loop, which
// no signal handler on the main thread could run during. Node's SIGINT watchdog (the one behind
// `vm`'s breakOnSigint) takes the signal; this thread sees it, asks the main thread to end the
// cell, and if the main thread does not answer at once (it is busy), terminates the JavaScript it
// runs through the inspector, as the debugger's pause would stop it. kernel_node.mjs starts it.

import { Session } from 'node:inspector'
import { parentPort, workerData } from 'node:worker_threads'

/** `state[RUNNING]` is 1 while a cell runs (set by the main thread); `state[ACK]` 1 once it took an interrupt. */
const RUNNING = 0
const ACK = 1
/** How long the main thread has to take an interrupt before it is deemed busy, ms. */
const ANSWER_MS = 200
/** How often a pending SIGINT is looked for while a cell runs, ms. */
const POLL_MS = 50

const state = new Int32Array(workerData.state)
// process.binding is deprecated, and this part of it undocumented: without it, the main thread's
// own SIGINT handler still ends a cell that awaits, and a busy one is killed by the executor.
const watchdog = process.binding('contextify')
const inspector = new Session()
inspector.connectToMainThread()
watchdog.startSigintWatchdog()
parentPort.postMessage({ type: 'ready' })

/**
 * Takes a pending SIGINT, if any. A stop that leaves the watchdog running clears it: started once
 * more first, so that the signal handler never falls back to Node's (which would end the kernel).
 */
function takeSigint() {
  if (!watchdog.watchdogHasPendingSigint()) return false
  watchdog.startSigintWatchdog()
  watchdog.stopSigintWatchdog()
  return true
}

for (;;) {
  // Asleep between cells; an interrupt that came then was for a cell that had already ended.
  Atomics.wait(state, RUNNING, 0)
  takeSigint()
  while (Atomics.load(state, RUNNING) === 1) {
    if (takeSigint()) {
      Atomics.store(state, ACK, 0)
      parentPort.postMessage({ type: 'interrupt' })
      if (Atomics.wait(state, ACK, 0, ANSWER_MS) === 'timed-out') inspector.post('Runtime.terminateExecution')
    }
    Atomics.wait(state, RUNNING, 1, POLL_MS)
  }
}
