import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { connect, createServer } from 'node:net'
import t from 'tap'
import { readBufferPool } from '../lib/tcp/buffer-pool.js'
import { listen, svcWithEndpoints, testProxy, until } from './helpers.js'

// Pooled read buffers are reused only when the write that carried them completed at once. This
// drives the other case hard: backends and clients that stall reading at random moments, many
// transfers at once, random chunk sizes, both directions; every byte is checked by sha256.

/** Echo server that pauses reading at random moments: the proxy's writes to it go async. */
async function stallingEcho (t: { teardown: (fn: () => unknown) => void }, host: string): Promise<number> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {})
    s.on('data', (d: Buffer) => {
      if (!s.write(d)) s.pause()
      if (Math.random() < 0.05) { s.pause(); setTimeout(() => s.resume(), 5) }
    })
    s.on('drain', () => s.resume())
    s.on('end', () => s.end())
  })
  const port = await listen(server, host)
  t.teardown(() => server.close())
  return port
}

async function transfer (host: string, port: number, bytes: number): Promise<{ sent: string, got: string, n: number }> {
  const sent = createHash('sha256')
  const got = createHash('sha256')
  let n = 0
  const s = connect({ host, port, allowHalfOpen: true })
  s.on('data', (d: Buffer) => {
    got.update(d)
    n += d.length
    if (Math.random() < 0.05) { s.pause(); setTimeout(() => s.resume(), 5) } // a client that stalls too
  })
  const closed = once(s, 'close')
  await once(s, 'connect')
  let left = bytes
  while (left > 0) {
    const size = Math.min(left, 1 + Math.floor(Math.random() * 200_000))
    const chunk = randomBytes(size)
    sent.update(chunk)
    left -= size
    if (!s.write(chunk)) await once(s, 'drain')
  }
  s.end()
  await closed
  return { sent: sent.digest('hex'), got: got.digest('hex'), n }
}

t.test('40 concurrent stalling transfers keep every byte in order', async (t) => {
  const port = await stallingEcho(t, '127.0.8.1')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('integrity', '127.50.8.1', 80, [{ ip: '127.0.8.1', port }]))
  const a = p.address('default/integrity', 80)
  const sizes = Array.from({ length: 40 }, (_, i) => (i % 4 === 0 ? 4_000_000 : 1 + Math.floor(Math.random() * 600_000)))
  const results = await Promise.all(sizes.map((n) => transfer(a.address, a.port, n)))
  results.forEach((r, i) => {
    t.equal(r.n, sizes[i], `transfer ${i}: byte count`)
    t.equal(r.got, r.sent, `transfer ${i}: sha256`)
  })
  // The transfers really went through pooled reads: closed sockets gave their buffers back,
  // and the large ones were used (4 MB transfers grow past the small size).
  t.ok(await until(() => readBufferPool().large > 0 && readBufferPool().small > 0), `pool filled: ${JSON.stringify(readBufferPool())}`)
})

t.test('node engine with pooledReads: false keeps Node\'s own reads, same bytes', async (t) => {
  const port = await stallingEcho(t, '127.0.8.2')
  const p = testProxy(t, { engine: 'node', pooledReads: false })
  await p.apply(svcWithEndpoints('plain', '127.50.8.2', 80, [{ ip: '127.0.8.2', port }]))
  const a = p.address('default/plain', 80)
  const r = await transfer(a.address, a.port, 3_000_000)
  t.equal(r.n, 3_000_000)
  t.equal(r.got, r.sent)
})

t.test('IPv6: a service on ::1 with an IPv6 endpoint carries bytes intact', async (t) => {
  const port = await stallingEcho(t, '::1')
  const p = testProxy(t)
  await p.apply([
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'v6' }, spec: { clusterIP: '::1', ports: [{ port: 80 }] } },
    { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'v6' }, subsets: [{ addresses: [{ ip: '::1' }], ports: [{ port }] }] },
  ])
  const a = p.address('default/v6', 80)
  t.equal(a.family, 'IPv6')
  const r = await transfer(a.address, a.port, 2_000_000)
  t.equal(r.n, 2_000_000)
  t.equal(r.got, r.sent)
  t.same(p.status()[0]?.endpoints.map((e) => e.endpoint), [`[::1]:${port}`])
})

t.test('adoptAccepted gives up (and the caller keeps the socket) when there is no handle', async (t) => {
  const { adoptAccepted } = await import('../lib/tcp/stream-reads.js')
  const { Socket } = await import('node:net')
  const s = new Socket()
  t.equal(adoptAccepted(s, () => true), null)
  t.equal(s.destroyed, false, 'the socket was left alone')
  s.destroy()
})
