/** The "cross-session" group (cross-session.ts) on the gVisor driver. */
import { gvisorManager, gvisorUnavailable } from '../gvisor-fixtures.ts'
import { defineCrossSessionSuite } from './cross-session.ts'

defineCrossSessionSuite(
  'gvisor',
  await gvisorUnavailable(),
  () => gvisorManager({ poolSize: 0 }),
  "a gVisor sandbox's processes are the sentry's tasks, not host processes, so there are no host pids to signal; gvisor.test.ts checks neighbours cannot see each other's processes",
)
