import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { test } from 'node:test'
import { promisify } from 'node:util'

const run = promisify(execFile)

test('the root imports no Node built-in and works without a process global', async () => {
  const root = new URL('../src/index.ts', import.meta.url).href
  // A child process that refuses every Node built-in imported after this point, then hides
  // `process` the way a browser lacks it, and only then loads and uses the SDK's root.
  const script = `
    import { registerHooks, builtinModules } from 'node:module'
    registerHooks({
      resolve(specifier, context, next) {
        if (specifier.startsWith('node:') || builtinModules.includes(specifier)) throw new Error(specifier + ' imported by ' + context.parentURL)
        return next(specifier, context)
      },
    })
    const realProcess = globalThis.process
    Object.defineProperty(globalThis, 'process', { value: undefined, configurable: true })
    const sdk = await import(${JSON.stringify(root)})
    const client = new sdk.CodeboxClient()
    const ci = new sdk.CodeInterpreter()
    Object.defineProperty(globalThis, 'process', { value: realProcess, configurable: true })
    console.log(JSON.stringify({ baseUrl: client.baseUrl, sessionId: ci.sessionId ?? null }))
  `
  const { stdout } = await run(process.execPath, ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', script], {
    env: { ...process.env, CODEBOX_URL: 'http://ignored:1' },
  })
  assert.deepEqual(JSON.parse(stdout), { baseUrl: 'http://127.0.0.1:8080', sessionId: null })
})
