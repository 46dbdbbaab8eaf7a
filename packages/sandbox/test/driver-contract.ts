/** The driver contract suite lives in the package (`@codebox/sandbox/testing`); this keeps the old import path. */
export * from '../src/testing/contract.ts'
