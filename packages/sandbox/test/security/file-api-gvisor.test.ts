/** The "file API" group (file-api.ts) on the gVisor driver. */
import { gvisorManager, gvisorUnavailable } from '../gvisor-fixtures.ts'
import { defineFileApiSuite } from './file-api.ts'

defineFileApiSuite('gvisor', await gvisorUnavailable(), () => gvisorManager({ poolSize: 0 }))
