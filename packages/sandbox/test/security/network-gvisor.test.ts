/** The "network" group (network.ts) on the gVisor driver. */
import { gvisorManager, gvisorUnavailable } from '../gvisor-fixtures.ts'
import { defineNetworkSuite } from './network.ts'

defineNetworkSuite('gvisor', await gvisorUnavailable(), () => gvisorManager({ poolSize: 0 }))
