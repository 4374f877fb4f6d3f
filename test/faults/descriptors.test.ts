// Fault suite (issue #8): descriptors and memory. 5,000 idle clients held and released,
// many sequential short connections (kubernetes#18354, #14641: fd leaks and CLOSE_WAIT), and a
// slow reader that must not make the proxy buffer without bound.
// Descriptors are counted only once a fact says they should be (pairs established, every pair
// closed, the backend's connections gone), never against a clock: on a busy machine the test
// waits longer and tap's per-file timeout is the only bound.
import { once } from 'node:events'
import { connect, createServer, type Socket } from 'node:net'
import t from 'tap'
import { TcpFrontend } from '../../lib/tcp/frontend.js'
import type { PairBase } from '../../lib/tcp/pair.js'
import type { ServiceProxy } from '../../lib/index.js'
import { echoServer, fetchAll, listen, nameServer, svcWithEndpoints, testProxy } from '../helpers.js'
import { closeWaitCount, connectHeld, echoOnce, fdCount, openConnections, socketsOf, startDaemon, waitFor, writeConfig } from './fault-helpers.js'

/** Sequential connections in the CI test; bench/soak runs 100,000 (`--sequential 100000`). */
const SEQUENTIAL = Number(process.env.FAULT_SEQUENTIAL ?? 10_000)
const IDLE_CLIENTS = Number(process.env.FAULT_IDLE_CLIENTS ?? 5_000)

t.test(`${IDLE_CLIENTS} concurrent idle clients held, then released: descriptors back to the start count`, async (t) => {
  // The proxy runs as a daemon so its descriptors are counted apart from the clients' and the
  // backend's (5 descriptors per connection in one process would pass the 20k ulimit).
  const echo = await echoServer(t, '127.0.9.1')
  // Connections the daemon has dialed and not closed, seen from the backend.
  const dialed = openConnections(echo.server)
  const config = writeConfig(svcWithEndpoints('idle', '127.52.0.1', 8080, [{ ip: '127.0.9.1', port: echo.port }]) as unknown[])
  const d = await startDaemon(t, config, ['--log-level', 'warn'])
  // The daemon prints "serving" once its listeners are up: one request, no retry loop, no clock.
  t.equal(await echoOnce('127.52.0.1', 8080, 'ping', 0), 'ping', 'daemon serves')
  const pairs = (): { clients: number, upstreams: number } => socketsOf(d.pid, 8080, echo.port)
  await waitFor(() => dialed() === 0 && pairs().clients === 0 && pairs().upstreams === 0)
  const start = fdCount(d.pid)

  const held: Socket[] = []
  t.teardown(() => { for (const s of held) s.destroy() })
  for (let i = 0; i < IDLE_CLIENTS; i += 250) {
    const batch = await Promise.all(Array.from({ length: Math.min(250, IDLE_CLIENTS - i) }, () => connectHeld('127.52.0.1', 8080, 0)))
    for (const s of batch) if (s !== null) { s.on('error', () => {}); held.push(s) }
    // Paced by the daemon: the next batch waits until this one is proxied through to the backend,
    // so a slow daemon never sees more than one batch in its accept queue.
    await waitFor(() => dialed() >= held.length)
  }
  t.equal(held.length, IDLE_CLIENTS, 'every client connected')
  // Pairs established: every client accepted and its backend dialed, in the daemon's own table.
  await waitFor(() => { const n = pairs(); return n.clients === IDLE_CLIENTS && n.upstreams === IDLE_CLIENTS })
  t.equal(fdCount(d.pid) - start, 2 * IDLE_CLIENTS, 'daemon holds 2 descriptors per client, nothing more')
  // Still serving while they are held.
  t.equal(await echoOnce('127.52.0.1', 8080, 'busy', 0), 'busy', 'serves while 5k are held')

  for (const s of held) s.destroy()
  held.length = 0
  // Every pair closed by the daemon and seen closed by the backend; then nothing else may be left.
  await waitFor(() => { const n = pairs(); return n.clients === 0 && n.upstreams === 0 && dialed() === 0 }, 50)
  t.ok(fdCount(d.pid) <= start, `descriptors back to the start count (start ${start}, now ${fdCount(d.pid)})`)
  t.equal(closeWaitCount([8080, echo.port]), 0, 'nothing left in CLOSE_WAIT')
  t.equal(await echoOnce('127.52.0.1', 8080, 'after', 0), 'after', 'serves after the release')
})

t.test(`${SEQUENTIAL} sequential short connections: no descriptor growth, nothing in CLOSE_WAIT`, async (t) => {
  const srv = await nameServer(t, 'n', '127.0.9.2')
  const backendOpen = openConnections(srv.server)
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('seq', '127.52.0.2', 80, [{ ip: '127.0.9.2', port: srv.port }]))
  const addr = p.address('default/seq', 80)
  // Warm up lazily opened handles before the start count.
  for (let i = 0; i < 20; i++) await fetchAll(addr.address, addr.port)
  // Settled: the proxy closed every pair and the backend saw every connection close (a client
  // socket is closed once fetchAll resolves). Only then do descriptors mean anything.
  const settled = (): boolean => p.dataplane.openCount() === 0 && backendOpen() === 0
  await waitFor(settled)
  const start = fdCount()
  let bad = 0
  for (let i = 0; i < SEQUENTIAL; i++) if (await fetchAll(addr.address, addr.port) !== 'n') bad++
  t.equal(bad, 0, 'every connection was answered')
  await waitFor(settled)
  t.ok(fdCount() <= start + 2, `no descriptor growth (start ${start}, now ${fdCount()})`)
  t.equal(closeWaitCount([addr.port, srv.port]), 0, 'nothing in CLOSE_WAIT')
  t.equal(p.status()[0]?.accepted, SEQUENTIAL + 20, 'every connection was accepted')
})

function tcpPairs (p: ServiceProxy): PairBase[] {
  const out: PairBase[] = []
  for (const fe of p.dataplane.frontends.values()) if (fe instanceof TcpFrontend) for (const pair of fe.pairs) out.push(pair)
  return out
}

t.test('a slow-reading client cannot make the proxy buffer without bound', async (t) => {
  const TOTAL = 64 * 1024 * 1024
  let offered = 0
  let blocked = false
  // The backend writes as fast as the proxy takes it, 64 KiB at a time, up to 64 MiB.
  const server = createServer((s) => {
    s.on('error', () => {})
    const chunk = Buffer.alloc(64 * 1024, 97)
    const pump = (): void => {
      blocked = false
      while (offered < TOTAL) {
        offered += chunk.length
        if (!s.write(chunk)) { blocked = true; return }
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
  t.ok(await waitFor(() => tcpPairs(p).length === 1 && (p.status()[0]?.bytesDown ?? 0) > 0), 'pair established')

  // Watch the proxy while the client reads nothing, until its intake has stalled: the backend
  // waits for 'drain' (or has offered everything) and 30 looks in a row saw no new byte. A
  // descheduled proxy can only end the watch early, which makes the intake smaller, not larger.
  let maxQueued = 0
  let last = -1
  let still = 0
  await waitFor(() => {
    for (const pair of tcpPairs(p)) maxQueued = Math.max(maxQueued, pair.queued())
    const down = p.status()[0]?.bytesDown ?? 0
    still = down === last ? still + 1 : 0
    last = down
    return (blocked || offered >= TOTAL) && still >= 30
  }, 10)
  const intake = p.status()[0]?.bytesDown ?? 0
  t.comment(`backend offered ${offered} bytes; proxy read ${intake}; largest user-space queue ${maxQueued}`)
  t.ok(maxQueued <= 1024 * 1024, `per-connection user-space buffer stays bounded (${maxQueued} bytes <= 1 MiB)`)
  t.ok(intake < TOTAL / 2, `the proxy stopped reading the backend (${intake} of ${TOTAL} bytes; the rest waits in kernel buffers and the backend)`)

  // Reading again, the client gets every byte: the stall was backpressure, not loss.
  let got = 0
  client.on('data', (c: Buffer) => { got += c.length })
  client.resume()
  await once(client, 'end') // the backend ends after TOTAL bytes; the proxy passes the FIN on
  t.equal(got, TOTAL, `the client received all ${TOTAL} bytes once it read`)
  client.destroy()
})
