/**
 * A TCP load balancer for replica tests, as a cluster's Service gives one: each new connection
 * goes to the next backend in turn (no stickiness); a backend that refuses the connection is
 * skipped for the next one, as a Service drops an endpoint whose pod is gone. `picks` records
 * where each connection went.
 */
import net from 'node:net'

export interface Balancer {
  url: string
  /** The backend index each accepted connection was sent to, in order. */
  picks: number[]
  close(): Promise<void>
}

export async function startBalancer(backends: readonly { port: number }[]): Promise<Balancer> {
  let next = 0
  const picks: number[] = []
  const open = new Set<net.Socket>()
  const connectTo = (client: net.Socket, tried: number): void => {
    if (tried >= backends.length) return void client.destroy()
    const index = next++ % backends.length
    const upstream = net.connect(backends[index]!.port, '127.0.0.1')
    open.add(upstream)
    upstream.once('close', () => open.delete(upstream))
    upstream.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNREFUSED' && !upstream.bytesRead) return connectTo(client, tried + 1)
      client.destroy()
    })
    upstream.once('connect', () => {
      picks.push(index)
      client.pipe(upstream).pipe(client)
      client.on('error', () => upstream.destroy())
      client.once('close', () => upstream.destroy())
      upstream.once('close', () => client.destroy())
      client.resume()
    })
  }
  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    open.add(client)
    client.once('close', () => open.delete(client))
    client.on('error', () => {})
    connectTo(client, 0)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    picks,
    close: async () => {
      for (const s of open) s.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
