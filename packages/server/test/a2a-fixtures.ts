/** A2A requests as a user's client sends them, for the tests of codebox's A2A door and of hosted A2A agents. */
import { randomUUID } from 'node:crypto'
import { Role, type Message, type SendMessageRequest } from '@a2a-js/sdk'

/** A SendMessage request carrying one user text message (a new message id each call); `extra` sets other message fields. */
export function userMessage(text: string, extra: Partial<Message> = {}): SendMessageRequest {
  return {
    tenant: '',
    message: {
      messageId: randomUUID(),
      contextId: '',
      taskId: '',
      role: Role.ROLE_USER,
      parts: [{ content: { $case: 'text', value: text }, metadata: undefined, filename: '', mediaType: 'text/plain' }],
      metadata: undefined,
      extensions: [],
      referenceTaskIds: [],
      ...extra,
    },
    configuration: undefined,
    metadata: undefined,
  }
}
