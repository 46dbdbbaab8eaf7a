/**
 * The codebox agent's A2A agent card (`/.well-known/agent-card.json`): who it is, its two skills
 * (answer by running code; generate code), the JSON-RPC endpoint for A2A v1.0 and v0.3, streaming,
 * and the bearer scheme once the server takes API keys. A v1.0 client (`A2A-Version: 1.0`) gets
 * the v1.0 card; a v0.3 peer (the header absent or 0.3, as AgentCore and Strands send) gets the
 * SDK's v0.3 translation of the same card.
 */
import { AgentCard, type AgentSkill } from '@a2a-js/sdk'
import { duplicateInterfacesForLegacy } from '@a2a-js/sdk/compat/v0_3'
import { LegacyRestTransportHandler } from '@a2a-js/sdk/compat/v0_3/server'
import { ServerCallContext, type A2ARequestHandler } from '@a2a-js/sdk/server'

export interface CardOptions {
  /** Absolute URL of the JSON-RPC endpoint. */
  url: string
  version: string
  /** Whether calls need `Authorization: Bearer <codebox API key>` (the server has keys). */
  bearer: boolean
}

const skill = (s: Pick<AgentSkill, 'id' | 'name' | 'description' | 'tags' | 'examples'>): AgentSkill => ({
  ...s,
  inputModes: ['text/plain'],
  outputModes: ['text/plain', 'image/png'],
  securityRequirements: [],
})

const skills: AgentSkill[] = [
  skill({
    id: 'answer-by-running-code',
    name: 'Answer by running code',
    description:
      'Answers questions that need computation, counting, dates or data by writing Python, JavaScript or TypeScript, running it in an isolated codebox sandbox and answering from its output (charts come back as images).',
    tags: ['code-interpreter', 'python', 'data-analysis', 'math'],
    examples: ['How many leap years are there between 2000 and 2024?', 'Plot y = x^2 for x from -5 to 5.'],
  }),
  skill({
    id: 'generate-code',
    name: 'Generate code',
    description:
      'Writes code for a request without running it, for the caller to edit; send the message with metadata {"role": "generate", "language": "python" | "javascript" | "typescript"}.',
    tags: ['code-generation'],
    examples: ['Write a function that parses a CSV file and sums each column.'],
  }),
]

/** The v1.0 agent card (the SDK's object form). */
export function agentCard(options: CardOptions): AgentCard {
  return {
    name: 'codebox',
    description:
      'The codebox agent: answers in plain language with numbers computed in an isolated code sandbox, and generates code on request. Conversations continue by A2A context id.',
    supportedInterfaces: duplicateInterfacesForLegacy([{ url: options.url, protocolBinding: 'JSONRPC', tenant: '', protocolVersion: '1.0' }], ['JSONRPC']),
    provider: undefined,
    version: options.version,
    capabilities: { streaming: true, pushNotifications: false, extensions: [], extendedAgentCard: false },
    securitySchemes: options.bearer
      ? {
          bearer: {
            scheme: {
              $case: 'httpAuthSecurityScheme',
              value: { description: 'A codebox API key, from `codebox keys create`.', scheme: 'Bearer', bearerFormat: '' },
            },
          },
        }
      : {},
    securityRequirements: options.bearer ? [{ schemes: { bearer: { list: [] } } }] : [],
    defaultInputModes: ['text/plain'],
    defaultOutputModes: ['text/plain', 'image/png'],
    skills,
    signatures: [],
  }
}

/** The card as JSON for a client of `requestedVersion` (absent: 0.3, as the SDK's own server decides). */
export async function agentCardJson(card: AgentCard, requestedVersion: string | undefined): Promise<unknown> {
  const version = requestedVersion || '0.3'
  if (!/^0\.\d+$/.test(version)) return AgentCard.toJSON(card)
  // The SDK's v0.3 translation (toCompatAgentCard), reached through its framework-neutral v0.3 REST handler.
  const translator = new LegacyRestTransportHandler({ getAuthenticatedExtendedAgentCard: async () => card } as unknown as A2ARequestHandler)
  const legacy = (await translator.getAuthenticatedExtendedAgentCard(new ServerCallContext())) as unknown as Record<string, unknown>
  // As the SDK's card route does, v1.0 interfaces ride along for clients that understand both.
  return { ...legacy, supportedInterfaces: structuredClone(card.supportedInterfaces) }
}
