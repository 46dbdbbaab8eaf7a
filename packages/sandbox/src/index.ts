/** @codebox/sandbox: sessions, the pool, the drivers and the image they run. */
export { SessionManager, type SessionManagerOptions, type StartOptions } from './session-manager.ts'
export {
  Session,
  SessionFiles,
  SessionTasks,
  MAX_CODE_BYTES,
  type ExecuteCodeOptions,
  type CallOptions,
  type EndReason,
  type SessionStatus,
  type TaskView,
} from './session.ts'
export { loadEngineConfig, type EngineConfig } from './config.ts'
export { createEngine, createDriver } from './engine.ts'
export { FakeDriver } from './drivers/fake/driver.ts'
export { BwrapDriver, type BwrapDriverOptions } from './drivers/bwrap/driver.ts'
export { defaultRecipe, recipeHash, type ImageRecipe } from './image/recipe.ts'
export { buildImage, ensureImage, findImage, imagePath, type ImageInfo } from './image/build.ts'
