// The TCP baseline: the ~20-line proxy anyone would write first. One listener per backend group,
// round-robin, `socket.pipe()` both ways (pipe does the backpressure), errors destroy the pair.
// No accounting, no retries. Two options differ from the defaults, as in svcproxy: noDelay (so
// latency differences are not Nagle's) and allowHalfOpen (without it a client's FIN closes the
// client socket at once and the answer to a half-closed request, as in the bulk workload, is lost).
import { connect, createServer, type Server } from 'node:net'
import { once } from 'node:events'
import { type Backends, type Endpoint, type ProxyAddresses, childConfig, failToParent, serveParent } from './child.js'

function naiveProxy (backends: Endpoint[]): Server {
  let next = 0
  return createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
    const b = backends[next++ % backends.length] as Endpoint
    const upstream = connect({ host: b.ip, port: b.port, noDelay: true, allowHalfOpen: true })
    client.pipe(upstream).pipe(client)
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
}

async function serve (backends: Endpoint[], ip: string): Promise<[Server, Endpoint]> {
  const s = naiveProxy(backends)
  s.listen({ host: ip, port: 0, backlog: 4096 })
  await once(s, 'listening')
  const a = s.address()
  if (a === null || typeof a === 'string') throw new Error('no address')
  return [s, { ip, port: a.port }]
}

async function main (): Promise<void> {
  const cfg = childConfig<Backends>()
  const [httpServer, http] = await serve(cfg.http, '127.0.40.1')
  const [bulkServer, bulk] = await serve(cfg.bulk, '127.0.40.2')
  const out: ProxyAddresses = { http, bulk, udp: null, notes: { udp: 'served by udp-naive' } }
  serveParent(out, async () => { httpServer.close(); bulkServer.close() })
}

main().catch(failToParent)
