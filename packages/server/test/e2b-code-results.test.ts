/**
 * The E2B code interpreter's mappings (apis/e2b/code-results.ts): display bundles into E2B's
 * result objects (hostile chart and JSON text included), E2B's languages and paths, and shell
 * variable names (a bash cell's env_vars).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { CodeboxError } from '@codebox/core'
import { CHART_MIME, DATA_MIME } from '@codebox/sandbox'
import { isShellName, languageOf, resultOf, toE2bPath, toSandboxPath } from '../src/apis/e2b/code-results.ts'

describe('E2B code interpreter mappings', () => {
  it('maps a display bundle onto the fields of a result', () => {
    const r = resultOf(
      {
        'text/plain': '<Figure 1>',
        'image/png': 'iVBORw0KGgo=',
        'text/html': '<b>x</b>',
        'application/json': '{"a":[1,2]}',
        'application/vnd.custom': 'kept',
        [CHART_MIME]: '{"type":"line","title":"t","elements":[]}',
        [DATA_MIME]: '{"a":[1,null]}',
      },
      false,
    )
    assert.deepEqual(r, {
      type: 'result',
      text: '<Figure 1>',
      png: 'iVBORw0KGgo=',
      html: '<b>x</b>',
      json: { a: [1, 2] },
      'application/vnd.custom': 'kept',
      chart: { type: 'line', title: 't', elements: [] },
      data: { a: [1, null] },
      is_main_result: false,
    })
    assert.equal(resultOf({ 'text/plain': '42' }, true).is_main_result, true)
  })

  it('drops chart and DataFrame data that is not a JSON object and keeps bad JSON displays as text', () => {
    for (const bad of ['not json', '[1,2]', '"x"', 'null', `{"a":"${'x'.repeat(2 * 1024 * 1024)}"}`]) {
      assert.equal(resultOf({ [CHART_MIME]: bad, 'text/plain': 'f' }, false).chart, undefined)
      assert.equal(resultOf({ [DATA_MIME]: bad, 'text/plain': 'f' }, false).data, undefined)
    }
    assert.equal(resultOf({ 'application/json': '{broken' }, true).json, '{broken')
    // A key that would shadow a field the SDK reads is never set from another mime type.
    assert.equal(resultOf({ 'text/plain': 'a', type: 'x' } as Record<string, string>, true).type, 'result')
  })

  it('names languages as E2B does and refuses the ones codebox does not run', () => {
    assert.equal(languageOf(undefined), 'python')
    assert.equal(languageOf('JS'), 'javascript')
    assert.equal(languageOf('ts'), 'typescript')
    assert.equal(languageOf('sh'), 'bash')
    assert.throws(
      () => languageOf('r'),
      (e: unknown) => e instanceof CodeboxError && e.code === 'ValidationError' && /"r" is not a language/.test(e.message),
    )
    assert.throws(
      () => languageOf(7),
      (e: unknown) => e instanceof CodeboxError && e.code === 'ValidationError',
    )
  })

  it('maps /home/user onto /workspace and back', () => {
    assert.equal(toSandboxPath('/home/user'), '/workspace')
    assert.equal(toSandboxPath('/home/user/a/../b'), '/workspace/b')
    assert.equal(toSandboxPath('proj'), '/workspace/proj')
    assert.equal(toSandboxPath('/home/username'), '/home/username')
    assert.equal(toSandboxPath('/tmp/x'), '/tmp/x')
    assert.equal(toE2bPath('/workspace/proj'), '/home/user/proj')
    assert.equal(toE2bPath('/workspaces'), '/workspaces')
  })

  it('tells shell variable names from other names', () => {
    for (const name of ['A', '_a1', 'E2B_SANDBOX']) assert.equal(isShellName(name), true, name)
    for (const name of ['', '1A', 'A-B', 'A B', 'Ä']) assert.equal(isShellName(name), false, name)
  })
})
