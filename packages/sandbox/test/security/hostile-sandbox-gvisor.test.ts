/**
 * Attack catalogue, group "Hostile sandbox -> host", on the gVisor driver: the hostile cells of
 * hostile-cells.ts (hostile content for the host, attacks on the executor) in real gVisor
 * sandboxes, while a control session keeps answering. The stand-in-executor half of the group
 * exercises the host's side of the channel only and runs once, in hostile-sandbox.test.ts.
 * Seeded: CODEBOX_FUZZ_SEED replays a run; every failure names the seed.
 */
import { randomInt } from 'node:crypto'
import { gvisorDriver, gvisorUnavailable } from '../gvisor-fixtures.ts'
import { defineHostileCellSuite } from './hostile-cells.ts'
import { PY_GUARD_GVISOR } from './probe.ts'

const SEED = Number(process.env.CODEBOX_FUZZ_SEED) || randomInt(1, 2 ** 31)
console.log(`hostile-sandbox-gvisor: seed ${SEED} (replay with CODEBOX_FUZZ_SEED=${SEED})`)

defineHostileCellSuite({ driverName: 'gvisor', unavailable: await gvisorUnavailable(), makeDriver: gvisorDriver, guard: PY_GUARD_GVISOR, seed: SEED })
