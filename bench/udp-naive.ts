// The UDP baseline: a naive dgram relay. One upstream socket per client address (created on its
// first datagram, round-robin over the backends), never expired, no limits, no accounting.
import { createSocket, type Socket } from 'node:dgram'
import { once } from 'node:events'
import { type Backends, type Endpoint, type ProxyAddresses, childConfig, failToParent, serveParent } from './child.js'

async function main (): Promise<void> {
  const cfg = childConfig<Backends>()
  const backends = cfg.udp
  const front = createSocket('udp4')
  const sessions = new Map<string, { u: Socket, b: Endpoint }>()
  let next = 0
  front.on('message', (msg, client) => {
    const key = `${client.address}:${client.port}`
    let s = sessions.get(key)
    if (s === undefined) {
      const u = createSocket('udp4')
      u.on('message', (reply) => { front.send(reply, client.port, client.address) })
      u.on('error', () => {})
      sessions.set(key, (s = { u, b: backends[next++ % backends.length] as Endpoint }))
    }
    s.u.send(msg, s.b.port, s.b.ip)
  })
  front.on('error', () => {})
  front.bind(0, '127.0.40.3')
  await once(front, 'listening')
  const out: ProxyAddresses = { http: null, bulk: null, udp: { ip: '127.0.40.3', port: front.address().port }, notes: {} }
  serveParent(out, async () => {
    for (const s of sessions.values()) s.u.close()
    front.close()
  })
}

main().catch(failToParent)
