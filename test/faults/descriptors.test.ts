// Fault suite (issue #8): descriptors and memory. 5,000 idle clients held and released,
// many sequential short connections (kubernetes#18354, #14641: fd leaks and CLOSE_WAIT), and a
// slow reader that must not make the proxy buffer without bound.
import { once } from 'node:events'
import { connect, createServer, type Socket } from 'node:net'
import t from 'tap'
import { TcpFrontend } from '../../lib/tcp/frontend.js'
import type { PairBase } from '../../lib/tcp/pair.js'
import type { ServiceProxy } from '../../lib/index.js'
import { echoServer, fetchAll, listen, nameServer, svcWithEndpoints, testProxy, until } from '../helpers.js'
import { closeWaitCount, connectHeld, echoOnce, fdCount, startDaemon, waitServing, writeConfig } from './fault-helpers.js'

/** Sequential connections in the CI test; bench/soak runs 100,000 (`--sequential 100000`). */
const SEQUENTIAL = Number(process.env.FAULT_SEQUENTIAL ?? 10_000)
const IDLE_CLIENTS = Number(process.env.FAULT_IDLE_CLIENTS ?? 5_000)

t.test(`${IDLE_CLIENTS} concurrent idle clients held, then released: descriptors back to the start count`, async (t) => {
  // The proxy runs as a daemon so its descriptors are counted apart from the clients' and the
  // backend's (5 descriptors per connection in one process would pass the 20k ulimit).
  const echo = await echoServer(t, '127.0.9.1')
  const config = writeConfig(svcWithEndpoints('idle', '127.52.0.1', 8080, [{ ip: '127.0.9.1', port: echo.port }]) as unknown[])
  const d = await startDaemon(t, config, ['--log-level', 'warn'])
  t.ok(await waitServing('127.52.0.1', 8080, 'ping'), 'daemon serves')
  const start = fdCount(d.pid)

  const held: Socket[] = []
  t.teardown(() => { for (const s of held) s.destroy() })
  for (let i = 0; i < IDLE_CLIENTS; i += 250) {
    const batch = await Promise.all(Array.from({ length: Math.min(250, IDLE_CLIENTS - i) }, () => connectHeld('127.52.0.1', 8080)))
    for (const s of batch) if (s !== null) { s.on('error', () => {}); held.push(s) }
  }
  t.equal(held.length, IDLE_CLIENTS, 'every client connected')
  // Each proxied connection holds two descriptors in the daemon once its backend is dialed.
  t.ok(await until(() => fdCount(d.pid) >= start + 2 * IDLE_CLIENTS, 20000), `daemon holds 2 descriptors per client (${fdCount(d.pid) - start} over the start)`)
  // Still serving while they are held.
  t.equal(await echoOnce('127.52.0.1', 8080, 'busy'), 'busy', 'serves while 5k are held')

  for (const s of held) s.destroy()
  held.length = 0
  const back = await until(() => fdCount(d.pid) <= start, 20000)
  t.ok(back, `descriptors back to the start count (start ${start}, now ${fdCount(d.pid)})`)
  t.ok(await until(() => closeWaitCount([8080, echo.port]) === 0), 'nothing left in CLOSE_WAIT')
  t.equal(await echoOnce('127.52.0.1', 8080, 'after'), 'after', 'serves after the release')
})

t.test(`${SEQUENTIAL} sequential short connections: no descriptor growth, nothing in CLOSE_WAIT`, async (t) => {
  const srv = await nameServer(t, 'n', '127.0.9.2')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('seq', '127.52.0.2', 80, [{ ip: '127.0.9.2', port: srv.port }]))
  const addr = p.address('default/seq', 80)
  // Warm up lazily opened handles before the start count.
  for (let i = 0; i < 20; i++) await fetchAll(addr.address, addr.port)
  await until(() => p.dataplane.openCount() === 0)
  const start = fdCount()
  let bad = 0
  for (let i = 0; i < SEQUENTIAL; i++) if (await fetchAll(addr.address, addr.port) !== 'n') bad++
  t.equal(bad, 0, 'every connection was answered')
  t.ok(await until(() => p.dataplane.openCount() === 0), 'no pair left open')
  t.ok(await until(() => fdCount() <= start + 2), `no descriptor growth (start ${start}, now ${fdCount()})`)
  t.ok(await until(() => closeWaitCount([addr.port, srv.port]) === 0), `nothing in CLOSE_WAIT (${closeWaitCount([addr.port, srv.port])})`)
  t.equal(p.status()[0]?.accepted, SEQUENTIAL + 20)
})

function tcpPairs (p: ServiceProxy): PairBase[] {
  const out: PairBase[] = []
  for (const fe of p.dataplane.frontends.values()) if (fe instanceof TcpFrontend) for (const pair of fe.pairs) out.push(pair)
  return out
}

t.test('a slow-reading client cannot make the proxy buffer without bound', async (t) => {
  const TOTAL = 64 * 1024 * 1024
  let offered = 0
  // The backend writes as fast as the proxy takes it, 64 KiB at a time, up to 64 MiB.
  const server = createServer((s) => {
    s.on('error', () => {})
    const chunk = Buffer.alloc(64 * 1024, 97)
    const pump = (): void => {
      while (offered < TOTAL) {
        offered += chunk.length
        if (!s.write(chunk)) return
      }
      s.end()
    }
    s.on('drain', pump)
    pump()
  })
  const port = await listen(server, '127.0.9.3')
  t.teardown(() => server.close())
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('slow', '127.52.0.3', 80, [{ ip: '127.0.9.3', port }]))
  const addr = p.address('default/slow', 80)

  const client = connect({ host: addr.address, port: addr.port })
  client.on('error', () => {})
  client.pause() // reads nothing: the kernel buffers fill, then the proxy must stop reading the backend
  await once(client, 'connect')
  t.ok(await until(() => tcpPairs(p).length === 1 && (p.status()[0]?.bytesDown ?? 0) > 0), 'pair established')

  // Watch the proxy while the client reads nothing, until its intake has stalled.
  let maxQueued = 0
  let last = -1
  let still = 0
  await until(() => {
    for (const pair of tcpPairs(p)) maxQueued = Math.max(maxQueued, pair.queued())
    const down = p.status()[0]?.bytesDown ?? 0
    still = down === last ? still + 1 : 0
    last = down
    return still >= 30 // ~300 ms with no progress: the proxy stopped reading
  }, 15000)
  const intake = p.status()[0]?.bytesDown ?? 0
  t.comment(`backend offered ${offered} bytes; proxy read ${intake}; largest user-space queue ${maxQueued}`)
  t.ok(maxQueued <= 1024 * 1024, `per-connection user-space buffer stays bounded (${maxQueued} bytes <= 1 MiB)`)
  t.ok(intake < TOTAL / 2, `the proxy stopped reading the backend (${intake} of ${TOTAL} bytes; the rest waits in kernel buffers and the backend)`)

  // Reading again, the client gets every byte: the stall was backpressure, not loss.
  let got = 0
  client.on('data', (c: Buffer) => { got += c.length })
  client.resume()
  const done = await until(() => got === TOTAL, 30000)
  t.ok(done, `the client received all ${TOTAL} bytes once it read (${got})`)
  client.destroy()
})
