/**
 * @codebox/tools: codebox's tools as an agent sees them, for any framework: the definitions
 * (names, descriptions, zod schemas), a dispatcher that runs a call in a session, the result as
 * text for a model, and the definitions and dispatcher for the Anthropic and OpenAI APIs. The MCP
 * server and the adapters at @codebox/sdk/ai and @codebox/sdk/langchain are built on these.
 */
export { agentToolDescriptions, agentToolNames, agentToolSchemas, toCodeboxCall, type AgentToolInput, type AgentToolName } from './definitions.ts'
export {
  checkAgentToolCall,
  errorForModel,
  isAgentToolName,
  modelImageTypes,
  resultStatus,
  resultToText,
  resultToTextAndImages,
  runAgentTool,
  type ModelImageType,
  type RunToolOptions,
  type ToolTarget,
} from './dispatch.ts'
export {
  agentToolJsonSchema,
  anthropicTools,
  dispatchToolCall,
  openaiResponsesTools,
  openaiTools,
  type AnthropicToolDefinition,
  type AnthropicToolResult,
  type AnthropicToolUse,
  type DispatchToolCallOptions,
  type JsonObjectSchema,
  type OpenAIChatTool,
  type OpenAIResponsesFunctionCall,
  type OpenAIResponsesFunctionCallOutput,
  type OpenAIResponsesTool,
  type OpenAIToolCall,
  type OpenAIToolMessage,
  type ToolListOptions,
} from './providers.ts'
