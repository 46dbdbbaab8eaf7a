/** The "executor and kernel channel out of reach" group (executor-reach.ts) on the bwrap driver. */
import { bwrapManager, bwrapUnavailable } from '../fixtures.ts'
import { defineExecutorReach } from './executor-reach.ts'
import { PY_GUARD } from './probe.ts'

defineExecutorReach({ driverName: 'bwrap', unavailable: await bwrapUnavailable(), makeManager: () => bwrapManager({ poolSize: 0 }), guard: PY_GUARD })
