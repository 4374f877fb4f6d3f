// Limits (issue #8): --max-connections, annotation svcproxy.io/max-connections, --tcp-idle-timeout.
import type { Socket } from 'node:net'
import t from 'tap'
import { ConfigError, ValidationError, type CloseEvent } from '../../lib/index.js'
import { echoServer, svcWithEndpoints, testProxy, until } from '../helpers.js'
import { connectHeld, echoOnce } from './fault-helpers.js'

async function holdEcho (host: string, port: number, n: number, t: { teardown: (fn: () => unknown) => void }): Promise<Socket[]> {
  const held: Socket[] = []
  t.teardown(() => { for (const s of held) s.destroy() })
  for (let i = 0; i < n; i++) {
    const s = await connectHeld(host, port)
    if (s === null) throw new Error('connect failed')
    s.on('error', () => {})
    held.push(s)
    // Proven established end to end: an echo comes back.
    const got = new Promise((resolve) => s.once('data', resolve))
    s.write('hi')
    await got
  }
  return held
}

t.test('--max-connections: beyond it new connections are reset at once and counted; freed slots serve again', async (t) => {
  const echo = await echoServer(t, '127.0.11.1')
  const p = testProxy(t, { maxConnections: 5 })
  // Two services: the limit is global across service ports.
  await p.apply(svcWithEndpoints('lim-a', '127.54.0.1', 80, [{ ip: '127.0.11.1', port: echo.port }]))
  await p.apply(svcWithEndpoints('lim-b', '127.54.0.2', 80, [{ ip: '127.0.11.1', port: echo.port }]))
  const a = p.address('default/lim-a', 80)
  const b = p.address('default/lim-b', 80)
  const held = [...await holdEcho(a.address, a.port, 3, t), ...await holdEcho(b.address, b.port, 2, t)]
  t.equal(p.limits.active, 5)
  t.equal(await echoOnce(a.address, a.port, 'x'), 'ERR:ECONNRESET', 'the 6th connection (service a) is reset')
  t.equal(await echoOnce(b.address, b.port, 'x'), 'ERR:ECONNRESET', 'and on service b')
  t.equal(p.limits.rejected, 2)
  t.equal(p.dataplane.runtimes.get(p.status()[0]?.id ?? '')?.rejectedLimit, 1, 'counted per service port too')
  held[0]?.destroy()
  t.ok(await until(() => p.limits.active === 4), 'a slot frees when a connection ends')
  t.equal(await echoOnce(b.address, b.port, 'y'), 'y', 'served again')
})

t.test('annotation svcproxy.io/max-connections limits one service; others are unaffected', async (t) => {
  const echo = await echoServer(t, '127.0.11.2')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('capped', '127.54.0.3', 80, [{ ip: '127.0.11.2', port: echo.port }], { annotations: { 'svcproxy.io/max-connections': '2' } }))
  await p.apply(svcWithEndpoints('free', '127.54.0.4', 80, [{ ip: '127.0.11.2', port: echo.port }]))
  const capped = p.address('default/capped', 80)
  const free = p.address('default/free', 80)
  await holdEcho(capped.address, capped.port, 2, t)
  t.equal(await echoOnce(capped.address, capped.port, 'x'), 'ERR:ECONNRESET', 'third connection to the capped service is reset')
  await holdEcho(free.address, free.port, 5, t)
  t.equal(await echoOnce(free.address, free.port, 'z'), 'z', 'the other service is not capped')
  // Lifting the limit applies to the running service.
  await p.apply(svcWithEndpoints('capped', '127.54.0.3', 80, [{ ip: '127.0.11.2', port: echo.port }], { annotations: { 'svcproxy.io/max-connections': '0' } }))
  t.equal(await echoOnce(capped.address, capped.port, 'w'), 'w', '"0" lifts the limit')
})

t.test('annotation svcproxy.io/max-connections counts the service\'s ports together', async (t) => {
  const echo = await echoServer(t, '127.0.11.5')
  const p = testProxy(t)
  await p.apply([
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'two', annotations: { 'svcproxy.io/max-connections': '3' } }, spec: { clusterIP: '127.54.0.7', ports: [{ name: 'a', port: 80 }, { name: 'b', port: 81 }] } },
    { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'two' }, subsets: [{ addresses: [{ ip: '127.0.11.5' }], ports: [{ name: 'a', port: echo.port }, { name: 'b', port: echo.port }] }] },
  ])
  const a = p.address('default/two', 'a')
  const b = p.address('default/two', 'b')
  await holdEcho(a.address, a.port, 2, t)
  await holdEcho(b.address, b.port, 1, t)
  t.equal(await echoOnce(b.address, b.port, 'x'), 'ERR:ECONNRESET', 'the 4th connection is reset, though port b holds only 1')
  t.equal(await echoOnce(a.address, a.port, 'x'), 'ERR:ECONNRESET', 'and on port a')
})

t.test('a malformed max-connections annotation or option is refused', async (t) => {
  const p = testProxy(t)
  for (const bad of ['-1', 'ten', '1.5', '', '99999999', ' 3']) {
    await t.rejects(p.apply(svcWithEndpoints('bad', '127.54.0.5', 80, [], { annotations: { 'svcproxy.io/max-connections': bad } })), ValidationError, `"${bad}" refused`)
  }
  t.throws(() => testProxy(t, { maxConnections: -1 }), ConfigError)
  t.throws(() => testProxy(t, { maxConnections: 1.5 }), ConfigError)
  t.throws(() => testProxy(t, { tcpIdleTimeoutMs: -5 }), ConfigError)
})

t.test('--tcp-idle-timeout: an idle pair is closed; a busy one is not', async (t) => {
  const echo = await echoServer(t, '127.0.11.3')
  const p = testProxy(t, { tcpIdleTimeoutMs: 300 })
  const closes: CloseEvent[] = []
  p.on('close', (e) => closes.push(e))
  await p.apply(svcWithEndpoints('idle', '127.54.0.6', 80, [{ ip: '127.0.11.3', port: echo.port }]))
  const addr = p.address('default/idle', 80)
  const [idle, busy] = await holdEcho(addr.address, addr.port, 2, t)
  let busyClosed = false
  busy?.on('close', () => { busyClosed = true })
  // Keep one connection talking (every 50 ms) while the other says nothing.
  const ticker = setInterval(() => busy?.write('.'), 50)
  t.teardown(() => clearInterval(ticker))
  const idleClosed = await until(() => idle?.destroyed === true || idle?.readableEnded === true, 10000)
  t.ok(idleClosed, 'the idle client saw its connection closed')
  t.ok(await until(() => closes.length === 1), 'one pair ended')
  t.equal(closes[0]?.reason, 'idle-timeout')
  t.equal(busyClosed, false, 'the busy connection is still open')
  clearInterval(ticker)
  t.equal(p.dataplane.openCount(), 1)
})

t.test('--tcp-idle-timeout off (default): idle pairs stay open', async (t) => {
  const echo = await echoServer(t, '127.0.11.4')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('noidle', '127.54.0.7', 80, [{ ip: '127.0.11.4', port: echo.port }]))
  const addr = p.address('default/noidle', 80)
  const [s] = await holdEcho(addr.address, addr.port, 1, t)
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(s?.destroyed, false)
  t.equal(p.dataplane.openCount(), 1)
})
