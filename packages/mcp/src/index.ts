/**
 * @codebox/mcp: codebox's agent tools as an MCP server. `createMcpServer(backend)` makes the
 * server of one connection; the codebox server mounts it at /mcp (Streamable HTTP) with its own
 * sessions as the backend, and `codebox mcp` serves it over stdio against a codebox server.
 */
export { createMcpServer, toMcpResult, type CodeboxMcpServer, type McpBackend, type McpServerOptions } from './server.ts'
export { defaultMaxMessageBytes, serveStdio, type ServeStdioOptions, type StdioConnection } from './stdio.ts'
