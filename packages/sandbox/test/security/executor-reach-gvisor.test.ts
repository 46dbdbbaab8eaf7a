/** The "executor and kernel channel out of reach" group (executor-reach.ts) on the gVisor driver. */
import { gvisorManager, gvisorUnavailable } from '../gvisor-fixtures.ts'
import { defineExecutorReach } from './executor-reach.ts'
import { PY_GUARD_GVISOR } from './probe.ts'

defineExecutorReach({
  driverName: 'gvisor',
  unavailable: await gvisorUnavailable(),
  makeManager: () => gvisorManager({ poolSize: 0 }),
  guard: PY_GUARD_GVISOR,
  procFdGap: 'gVisor (runsc 2022) ignores PR_SET_DUMPABLE 0 for /proc/<pid>/fd and environ (docs/security.md, Known limits)',
})
