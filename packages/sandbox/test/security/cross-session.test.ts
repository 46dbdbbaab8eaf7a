/** The "cross-session" group (cross-session.ts) on the bwrap driver. */
import { bwrapManager, bwrapUnavailable } from '../fixtures.ts'
import { defineCrossSessionSuite } from './cross-session.ts'

defineCrossSessionSuite('bwrap', await bwrapUnavailable(), () => bwrapManager({ poolSize: 0 }))
