/** The "file API" group (file-api.ts) on the bwrap driver. */
import { bwrapManager, bwrapUnavailable } from '../fixtures.ts'
import { defineFileApiSuite } from './file-api.ts'

defineFileApiSuite('bwrap', await bwrapUnavailable(), () => bwrapManager({ poolSize: 0 }))
