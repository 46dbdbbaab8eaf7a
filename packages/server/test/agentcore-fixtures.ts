/** Shared pieces of the AgentCore tests that drive the server with the real AWS SDK. */
import assert from 'node:assert/strict'
import {
  InvokeCodeInterpreterCommand,
  type BedrockAgentCoreClient,
  type CodeInterpreterResult,
  type InvokeCodeInterpreterCommandInput,
} from '@aws-sdk/client-bedrock-agentcore'

/** The one `result` event of an invoke (and checks there is exactly one event, for this session). */
export async function invoke(client: BedrockAgentCoreClient, input: InvokeCodeInterpreterCommandInput): Promise<CodeInterpreterResult> {
  const res = await client.send(new InvokeCodeInterpreterCommand(input))
  assert.equal(res.sessionId, input.sessionId)
  const events = []
  for await (const event of res.stream!) events.push(event)
  // The messages are built only on failure: a result can carry a 50 MB file.
  if (events.length !== 1) assert.fail(`one event, got ${events.length}: ${JSON.stringify(events).slice(0, 2000)}`)
  const result = events[0]!.result
  if (!result) assert.fail(`a result event, got ${JSON.stringify(events[0]).slice(0, 2000)}`)
  return result
}
