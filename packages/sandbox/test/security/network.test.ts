/** The "network" group (network.ts) on the bwrap driver. */
import { bwrapManager, bwrapUnavailable } from '../fixtures.ts'
import { defineNetworkSuite } from './network.ts'

defineNetworkSuite('bwrap', await bwrapUnavailable(), () => bwrapManager({ poolSize: 0 }))
