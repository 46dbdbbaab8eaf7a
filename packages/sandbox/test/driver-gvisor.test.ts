/** The driver contract on the gVisor driver and the built image; skipped, with the reason, where runsc cannot run. */
import { defineDriverTests } from './driver-contract.ts'
import { gvisorDriver, gvisorUnavailable } from './gvisor-fixtures.ts'

defineDriverTests('gvisor', async () => {
  const why = await gvisorUnavailable()
  return why === undefined ? gvisorDriver() : { skip: why }
})
