/**
 * MCP over stdio for large messages. The SDK's StdioServerTransport caps a message at 10 MB and
 * re-copies its buffer on every chunk (quadratic in the message size), and a message over its cap
 * closes the whole connection. Here stdin is first cut into whole lines, each handed over in one
 * piece, under a cap that fits a 100 MB file as base64; a request over the cap is answered with a
 * JSON-RPC error for its id and the connection goes on.
 */
import { Transform, type Readable, type TransformCallback, type Writable } from 'node:stream'
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js'
import { ErrorCode } from '@modelcontextprotocol/sdk/types.js'

/** Default largest MCP message read from stdin: 150 MB, a 100 MB file as base64 plus its request. */
export const defaultMaxMessageBytes = 150_000_000

export interface ServeStdioOptions {
  /** Default process.stdin. */
  stdin?: Readable
  /** Default process.stdout. Nothing else may write to it: it carries the protocol. */
  stdout?: Writable
  /** Largest message read, bytes. Default `defaultMaxMessageBytes`. */
  maxMessageBytes?: number
  /** Protocol and transport errors (a malformed message, a message over the cap). Default ignored. */
  onError?: (error: Error) => void
}

export interface StdioConnection {
  transport: StdioServerTransport
  /** Settles, with the reason, when stdin ends, stdout breaks or the transport closes. */
  ended: Promise<string>
}

/** Connects `server` to stdio; see `ended` for when the client has gone. */
export async function serveStdio(server: McpServer, options: ServeStdioOptions = {}): Promise<StdioConnection> {
  const stdin = options.stdin ?? process.stdin
  const stdout = options.stdout ?? process.stdout
  const maxMessageBytes = options.maxMessageBytes ?? defaultMaxMessageBytes
  const onError = options.onError ?? (() => {})
  let end: (reason: string) => void = () => {}
  const ended = new Promise<string>((resolve) => (end = resolve))

  const lines = new LineSplitter(maxMessageBytes, (size, tail) => {
    const id = requestIdAtEnd(tail)
    const message = `MCP message of ${size} bytes is over this server's limit of ${maxMessageBytes} bytes; send large files in parts, or with \`codebox files put\``
    onError(new Error(id === undefined ? message : `request ${JSON.stringify(id)}: ${message}`))
    if (id !== undefined) void transport.send({ jsonrpc: '2.0', id, error: { code: ErrorCode.InvalidRequest, message } }).catch(() => {})
  })
  const transport = new StdioServerTransport(lines, stdout, { maxBufferSize: maxMessageBytes + 1 })
  transport.onclose = () => end('the MCP transport closed')
  stdin.once('end', () => end('stdin ended'))
  stdin.once('close', () => end('stdin closed'))
  stdin.once('error', (e: Error) => end(`stdin failed: ${e.message}`))
  stdout.on('error', (e: Error) => end(`stdout failed: ${e.message}`))
  stdin.pipe(lines)
  server.server.onerror = onError
  await server.connect(transport)
  return { transport, ended }
}

/** Splits a byte stream into lines, each pushed whole (with its newline); a line over the cap is dropped and reported. */
class LineSplitter extends Transform {
  readonly #maxBytes: number
  readonly #onTooLarge: (size: number, tail: string) => void
  #parts: Buffer[] = []
  #size = 0
  #dropping = false
  #tail: Buffer = Buffer.alloc(0)

  constructor(maxBytes: number, onTooLarge: (size: number, tail: string) => void) {
    super()
    this.#maxBytes = maxBytes
    this.#onTooLarge = onTooLarge
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    let start = 0
    while (start < chunk.length) {
      const newline = chunk.indexOf(10, start)
      const end = newline < 0 ? chunk.length : newline + 1
      this.#add(chunk.subarray(start, end))
      if (newline >= 0) this.#endLine()
      start = end
    }
    done()
  }

  #add(piece: Buffer): void {
    this.#size += piece.length
    if (!this.#dropping && this.#size > this.#maxBytes) {
      this.#dropping = true
      this.#parts = []
    }
    if (this.#dropping) this.#tail = Buffer.concat([this.#tail, piece]).subarray(-256)
    else this.#parts.push(piece)
  }

  #endLine(): void {
    if (this.#dropping) this.#onTooLarge(this.#size, this.#tail.toString('utf8'))
    else this.push(this.#parts.length === 1 ? this.#parts[0] : Buffer.concat(this.#parts, this.#size))
    this.#parts = []
    this.#size = 0
    this.#dropping = false
    this.#tail = Buffer.alloc(0)
  }
}

/** The id of a JSON-RPC request from the end of its line (clients put `"id"` last), if it is there. */
function requestIdAtEnd(tail: string): string | number | undefined {
  const m = /"id"\s*:\s*("(?:[^"\\]|\\.){0,200}"|-?\d{1,16})\s*\}\s*$/.exec(tail)
  if (!m) return undefined
  try {
    return JSON.parse(m[1]!) as string | number
  } catch {
    return undefined
  }
}
