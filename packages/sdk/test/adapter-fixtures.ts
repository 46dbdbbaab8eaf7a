/** What the adapter tests share: a codebox server (fake driver) with one session, and a chart cell. */
import { after, before } from 'node:test'
import { testServer, type TestServer } from '../../server/test/fixtures.ts'
import { codeSession, type CodeInterpreter } from '../src/index.ts'

export const isPng = (base64: string): boolean => Buffer.from(base64, 'base64').subarray(1, 4).toString('latin1') === 'PNG'

export const plot = 'import matplotlib.pyplot as plt\nsquares = [i * i for i in range(1, 6)]\nplt.plot(squares)\nplt.title("squares")\nprint("plotted")'

/** Inside a describe: a server and a session started before its first test and stopped after its last. */
export function sessionOnTestServer(): { readonly server: TestServer; readonly ci: CodeInterpreter } {
  const shared = {} as { server: TestServer; ci: CodeInterpreter }
  before(async () => {
    shared.server = await testServer(undefined)
    shared.ci = await codeSession({ baseUrl: shared.server.url })
  })
  after(async () => {
    await shared.ci?.stop()
    await shared.server?.close()
  })
  return shared
}
