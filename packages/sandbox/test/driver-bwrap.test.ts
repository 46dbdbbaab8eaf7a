/** The driver contract on the bwrap driver and the built image; skipped, with the reason, where it cannot run. */
import { defineDriverTests } from '@codebox/sandbox/testing'
import { bwrapDriver, bwrapUnavailable } from './fixtures.ts'

defineDriverTests('bwrap', async () => {
  const why = await bwrapUnavailable()
  return why === undefined ? bwrapDriver() : { skip: why }
})
