/**
 * What every command gets: the environment (read once in main), and the flags every command that
 * talks to a server shares (`--url`, `--api-key`), turned into SDK client options.
 */
import type { ClientOptions } from '@codebox/sdk'
import type { FlagSpec, Parsed } from './args.ts'

export interface CommandContext {
  env: Record<string, string | undefined>
}

export const clientFlags: FlagSpec = {
  url: { type: 'string', description: 'server URL (default CODEBOX_URL or http://127.0.0.1:8080)' },
  'api-key': { type: 'string', description: 'API key (default CODEBOX_API_KEY)' },
}

export function clientOptions(flags: Parsed['flags'], ctx: CommandContext): ClientOptions {
  return {
    baseUrl: (flags.url as string | undefined) ?? ctx.env.CODEBOX_URL ?? 'http://127.0.0.1:8080',
    apiKey: (flags['api-key'] as string | undefined) ?? ctx.env.CODEBOX_API_KEY,
  }
}
