// Malformed traffic (issue #8): garbage bytes, RST storms, clients that connect and vanish,
// zero-length and maximum-size UDP datagrams. Nothing may crash; everything is released.
import { randomBytes } from 'node:crypto'
import { connect } from 'node:net'
import t from 'tap'
import { blackhole, echoServer, fetchAll, nameServer, svcWithEndpoints, testProxy, udpClient, udpServer, until } from '../helpers.js'
import { closeWaitCount, echoOnce, fdCount } from './fault-helpers.js'

t.test('garbage bytes, RST storms and vanishing clients: nothing crashes, everything is released', async (t) => {
  const echo = await echoServer(t, '127.0.12.1')
  const named = await nameServer(t, 'n', '127.0.12.2')
  const hole = await blackhole(t)
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('garbage', '127.55.0.1', 80, [{ ip: '127.0.12.1', port: echo.port }]))
  await p.apply(svcWithEndpoints('named', '127.55.0.2', 80, [{ ip: '127.0.12.2', port: named.port }]))
  await p.apply(svcWithEndpoints('hole', '127.55.0.3', 80, [{ ip: '127.0.0.1', port: hole }]))
  const g = p.address('default/garbage', 80)
  const n = p.address('default/named', 80)
  const h = p.address('default/hole', 80)
  await fetchAll(n.address, n.port)
  await until(() => p.dataplane.openCount() === 0)
  const start = fdCount()

  // Garbage: random binary payloads pass through byte for byte.
  for (let i = 0; i < 20; i++) {
    const junk = randomBytes(1 + (i * 7919) % 200_000)
    const back = await new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = []
      const s = connect({ host: g.address, port: g.port }, () => { s.end(junk) })
      s.on('data', (c: Buffer) => chunks.push(c))
      s.on('error', () => resolve(Buffer.alloc(0)))
      s.on('close', () => resolve(Buffer.concat(chunks)))
    })
    if (!back.equals(junk)) t.fail(`garbage payload ${i} (${junk.length} bytes) came back changed`)
  }
  t.pass('20 random binary payloads echoed intact')

  // RST storm: 300 clients reset mid-stream, some before sending, some after.
  await Promise.all(Array.from({ length: 300 }, (_, i) => new Promise<void>((resolve) => {
    const s = connect({ host: i % 2 === 0 ? g.address : n.address, port: i % 2 === 0 ? g.port : n.port })
    s.on('error', () => {})
    s.on('close', () => resolve())
    s.on('connect', () => {
      if (i % 3 === 0) s.write(randomBytes(1024))
      setImmediate(() => s.resetAndDestroy())
    })
  })))
  t.pass('300 resets sent')

  // Connect and vanish while the proxy is still dialing (the endpoint never answers a SYN).
  await Promise.all(Array.from({ length: 100 }, () => new Promise<void>((resolve) => {
    const s = connect({ host: h.address, port: h.port })
    s.on('error', () => {})
    s.on('connect', () => { s.destroy(); resolve() })
  })))
  t.pass('100 clients vanished mid-dial')

  t.ok(await until(() => p.dataplane.openCount() === 0, 10000), `every pair released (${p.dataplane.openCount()} open)`)
  t.ok(await until(() => fdCount() <= start + 2, 10000), `descriptors back (start ${start}, now ${fdCount()})`)
  t.ok(await until(() => closeWaitCount([g.port, n.port, h.port, echo.port, named.port]) === 0), 'nothing in CLOSE_WAIT')
  t.equal(await echoOnce(g.address, g.port, 'still'), 'still', 'still serving')
  t.equal(await fetchAll(n.address, n.port), 'n')
})

t.test('zero-length and maximum-size UDP datagrams', async (t) => {
  const srv = await udpServer(t)
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('dg', '127.55.0.4', 53, [{ ip: '127.0.0.1', port: srv.port }], { protocol: 'UDP' }))
  const addr = p.address('default/dg', 53)
  const c = await udpClient(t)
  const empty = await c.request(Buffer.alloc(0), addr.port, addr.address, 3, 1000)
  t.equal(empty?.data.length, 0, 'a zero-length datagram is proxied both ways')
  const MAX = 65507 // IPv4: 65535 - 8 (UDP header) - 20 (IP header)
  const big = randomBytes(MAX)
  const r = await c.request(big, addr.port, addr.address, 3, 1000)
  t.ok(r?.data.equals(big), 'a maximum-size datagram is proxied intact both ways')
  // A burst of random sizes, then the service still answers.
  for (let i = 0; i < 200; i++) c.send(randomBytes((i * 331) % MAX), addr.port, addr.address)
  const last = await c.request('ok?', addr.port, addr.address, 5, 1000)
  t.ok(last !== null, 'still answering after the burst')
})
