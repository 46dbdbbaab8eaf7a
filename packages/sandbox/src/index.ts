/** @codebox/sandbox: sessions, the pool, the drivers and the image they run. */
export { SessionManager, type SessionManagerOptions, type StartOptions } from './session-manager.ts'
export { Session, SessionFiles, SessionTasks, MAX_CODE_BYTES, type ExecuteCodeOptions, type CallOptions, type EndReason, type SessionStatus } from './session.ts'
export { FakeDriver } from './drivers/fake/driver.ts'
