/**
 * @codebox/sdk/tools: the agent tools of @codebox/tools, re-exported for code that already
 * imports them from the SDK. New code imports `@codebox/tools`.
 */
export * from '@codebox/tools'
