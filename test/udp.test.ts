import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import type { CloseEvent, ConnectionEvent, DialFailedEvent, EndpointEvent, ServiceProxy } from '../lib/index.js'
import type { ServicePortRuntime } from '../lib/frontend/runtime.js'
import type { UdpFrontend } from '../lib/udp/frontend.js'
import { forwardUp, openSession, PENDING_MAX_BYTES, PENDING_MAX_DATAGRAMS } from '../lib/udp/session.js'
import { type UdpClient, svcWithEndpoints, testProxy, udpClient, udpClosedPort, udpServer, until } from './helpers.js'

const UDP = { protocol: 'UDP' }

function runtime (p: ServiceProxy, name: string): ServicePortRuntime {
  for (const rt of p.dataplane.runtimes.values()) if (rt.service === name) return rt
  throw new Error(`no runtime for ${name}`)
}

t.test('request/response through the VIP: the reply comes from VIP:port', async (t) => {
  const be = await udpServer(t, 'a', '127.0.40.1')
  const p = testProxy(t)
  const accepts: ConnectionEvent[] = []
  const endpoints: EndpointEvent[] = []
  p.on('accept', (e) => accepts.push(e))
  p.on('endpoint', (e) => endpoints.push(e))
  await p.apply(svcWithEndpoints('dns', '127.60.0.1', 53, [{ ip: '127.0.40.1', port: be.port }], UDP))
  const addr = p.address('default/dns', 53)
  t.equal(addr.address, '127.60.0.1')
  const c = await udpClient(t)
  const r = await c.request('hello', addr.port, addr.address)
  t.equal(r?.data.toString(), 'a:hello')
  t.equal(r?.address, '127.60.0.1', 'reply source address is the VIP')
  t.equal(r?.port, addr.port, 'reply source port is the service port')

  const st = p.status()[0]
  t.equal(st?.protocol, 'UDP')
  t.equal(st?.frontends[0]?.state, 'listening')
  t.equal(st?.accepted, 1)
  t.equal(st?.active, 1, 'the session stays open after the reply')
  t.equal(st?.endpoints[0]?.active, 1)
  const rt = runtime(p, 'dns')
  t.equal(rt.udpDatagramsUp, 1)
  t.equal(rt.udpDatagramsDown, 1)
  t.equal(rt.bytesUp, 5)
  t.equal(rt.bytesDown, 7)
  t.equal(rt.endpoints[0]?.udpDatagramsDown, 1)
  t.equal(accepts[0]?.protocol, 'UDP')
  t.equal(accepts[0]?.client, `127.0.0.1:${c.port}`)
  t.equal(accepts[0]?.frontend, `127.60.0.1:${addr.port}`)
  t.equal(endpoints[0]?.endpoint, `127.0.40.1:${be.port}`)
  // The path taken: with the uv engine datagrams come and go through the sockets' handles
  // (udp-handle.ts), with the node engine through dgram's API.
  const fe = [...p.dataplane.frontends.values()][0] as UdpFrontend
  t.equal(fe.raw !== null, p.engine === 'uv', `service socket fast path under the ${p.engine} engine`)
  t.equal(fe.find('127.0.0.1', c.port)?.raw !== null, p.engine === 'uv', `session socket fast path under the ${p.engine} engine`)
})

t.test('many clients are spread round-robin across endpoints', async (t) => {
  const servers = await Promise.all(['a', 'b', 'c'].map((n, i) => udpServer(t, n, `127.0.41.${i + 1}`)))
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('rr', '127.60.0.2', 53, servers.map((s, i) => ({ ip: `127.0.41.${i + 1}`, port: s.port })), UDP))
  const addr = p.address('default/rr', 53)
  const got: string[] = []
  for (let i = 0; i < 7; i++) {
    const c = await udpClient(t)
    got.push((await c.request('q', addr.port, addr.address))?.data.toString() ?? 'none')
  }
  t.same(got, ['a:q', 'b:q', 'c:q', 'a:q', 'b:q', 'c:q', 'a:q'])
  t.equal(p.dataplane.openCount(), 7, 'one session per client address')
})

t.test('a multi-datagram session sticks to one endpoint; each session has its own upstream socket', async (t) => {
  const a = await udpServer(t, 'a', '127.0.42.1')
  const b = await udpServer(t, 'b', '127.0.42.2')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('stick', '127.60.0.3', 53, [{ ip: '127.0.42.1', port: a.port }, { ip: '127.0.42.2', port: b.port }], UDP))
  const addr = p.address('default/stick', 53)
  const c1 = await udpClient(t)
  const c2 = await udpClient(t)
  const seen1: string[] = []
  const seen2: string[] = []
  for (let i = 0; i < 5; i++) {
    seen1.push((await c1.request(`x${i}`, addr.port, addr.address))?.data.toString() ?? 'none')
    seen2.push((await c2.request(`y${i}`, addr.port, addr.address))?.data.toString() ?? 'none')
  }
  t.same(seen1, ['a:x0', 'a:x1', 'a:x2', 'a:x3', 'a:x4'])
  t.same(seen2, ['b:y0', 'b:y1', 'b:y2', 'b:y3', 'b:y4'])
  t.equal(p.status()[0]?.accepted, 2, 'two sessions, not ten')
  t.equal(a.peers().size, 1, 'endpoint a saw one proxy socket')
  t.equal(b.peers().size, 1, 'endpoint b saw one proxy socket')
})

t.test('ClientIP affinity: every port of one client IP goes to the same endpoint', async (t) => {
  const a = await udpServer(t, 'a', '127.0.43.1')
  const b = await udpServer(t, 'b', '127.0.43.2')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('aff', '127.60.0.4', 53, [{ ip: '127.0.43.1', port: a.port }, { ip: '127.0.43.2', port: b.port }], { ...UDP, spec: { sessionAffinity: 'ClientIP' } }))
  const addr = p.address('default/aff', 53)
  const got: string[] = []
  for (let i = 0; i < 4; i++) {
    const c = await udpClient(t, '127.0.43.10')
    got.push((await c.request('q', addr.port, addr.address))?.data.toString() ?? 'none')
  }
  t.same(got, ['a:q', 'a:q', 'a:q', 'a:q'], 'round-robin alone would alternate')
  t.equal(p.status()[0]?.accepted, 4, 'still one session per client address')
})

t.test('idle sessions expire; traffic either way keeps a session alive', async (t) => {
  t.test('expiry', async (t) => {
    const a = await udpServer(t, 'a', '127.0.44.1')
    const b = await udpServer(t, 'b', '127.0.44.2')
    const p = testProxy(t, { udpTimeoutMs: 100 })
    const closes: CloseEvent[] = []
    p.on('close', (e) => closes.push(e))
    await p.apply(svcWithEndpoints('idle', '127.60.0.5', 53, [{ ip: '127.0.44.1', port: a.port }, { ip: '127.0.44.2', port: b.port }], UDP))
    const addr = p.address('default/idle', 53)
    const c = await udpClient(t)
    t.equal((await c.request('1', addr.port, addr.address))?.data.toString(), 'a:1')
    t.ok(await until(() => closes.length === 1), 'session closed')
    t.equal(closes[0]?.reason, 'idle-timeout')
    t.equal(closes[0]?.protocol, 'UDP')
    t.equal(closes[0]?.endpoint, `127.0.44.1:${a.port}`)
    t.equal(closes[0]?.bytesIn, 1)
    t.equal(closes[0]?.bytesOut, 3)
    t.equal(p.dataplane.openCount(), 0)
    t.equal(runtime(p, 'idle').udpSessionsActive, 0)
    // The same client address now opens a new session, which round-robin sends on.
    t.equal((await c.request('2', addr.port, addr.address))?.data.toString(), 'b:2')
    t.equal(p.status()[0]?.accepted, 2)
  })

  // The gaps between datagrams are a small fraction of the timeout, and the whole exchange
  // lasts several timeouts: a single session throughout means each datagram refreshed it.
  t.test('client traffic refreshes', async (t) => {
    // A silent endpoint: only the client's datagrams can keep the session alive.
    const sink = await udpServer(t, '', '127.0.44.3')
    sink.sock.removeAllListeners('message')
    let got = 0
    sink.sock.on('message', () => { got++ })
    const p = testProxy(t, { udpTimeoutMs: 400 })
    const closes: CloseEvent[] = []
    p.on('close', (e) => closes.push(e))
    await p.apply(svcWithEndpoints('fresh', '127.60.0.6', 53, [{ ip: '127.0.44.3', port: sink.port }], UDP))
    const addr = p.address('default/fresh', 53)
    const c = await udpClient(t)
    const start = Date.now()
    let n = 0
    while (Date.now() - start < 1200) {
      c.send(String(n++), addr.port, addr.address)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    t.ok(await until(() => got === n), 'every datagram reached the endpoint')
    t.equal(closes.length, 0, 'no session ended')
    t.equal(p.status()[0]?.accepted, 1, 'one session for the whole exchange')
  })

  t.test('backend traffic refreshes', async (t) => {
    const p = testProxy(t, { udpTimeoutMs: 400 })
    const closes: CloseEvent[] = []
    p.on('close', (e) => closes.push(e))
    // An endpoint that streams: one request, then a datagram every 20 ms for 1.2 s.
    const streamer = await udpServer(t, '', '127.0.44.4')
    streamer.sock.removeAllListeners('message')
    streamer.sock.on('message', (_m, r) => {
      let i = 0
      const timer = setInterval(() => {
        streamer.sock.send(String(i++), r.port, r.address)
        if (i === 60) clearInterval(timer)
      }, 20)
      t.teardown(() => clearInterval(timer))
    })
    await p.apply(svcWithEndpoints('stream', '127.60.0.7', 53, [{ ip: '127.0.44.4', port: streamer.port }], UDP))
    const addr = p.address('default/stream', 53)
    const c = await udpClient(t)
    c.send('go', addr.port, addr.address)
    const got: string[] = []
    for (let i = 0; i < 60; i++) {
      const r = await c.recv()
      if (r === null) break
      got.push(r.data.toString())
    }
    t.equal(got.length, 60, 'every streamed datagram arrived')
    t.equal(closes.length, 0, 'the session was never idle')
  })
})

t.test('datagrams up to 65,507 bytes pass intact both ways', async (t) => {
  const echo = await udpServer(t, '', '127.0.45.1')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('big', '127.60.0.8', 9, [{ ip: '127.0.45.1', port: echo.port }], UDP))
  const addr = p.address('default/big', 9)
  const c = await udpClient(t)
  for (const size of [60_000, 65_507, 0]) {
    const payload = randomBytes(size)
    const r = await c.request(payload, addr.port, addr.address)
    t.equal(r?.data.length, size, `${size} bytes came back`)
    t.ok(r?.data.equals(payload), `${size} bytes unchanged`)
  }
  t.equal(runtime(p, 'big').bytesUp, 125_507)
})

t.test('an endpoint removed mid-session ends its sessions; the next datagram picks a live one', async (t) => {
  const a = await udpServer(t, 'a', '127.0.46.1')
  const b = await udpServer(t, 'b', '127.0.46.2')
  const other = await udpServer(t, 'o', '127.0.46.3')
  const p = testProxy(t)
  const closes: CloseEvent[] = []
  p.on('close', (e) => closes.push(e))
  const both = [{ ip: '127.0.46.1', port: a.port }, { ip: '127.0.46.2', port: b.port }]
  await p.apply(svcWithEndpoints('mv', '127.60.0.9', 53, both, UDP))
  await p.apply(svcWithEndpoints('bystander', '127.60.0.10', 53, [{ ip: '127.0.46.3', port: other.port }], UDP))
  const addr = p.address('default/mv', 53)
  const oaddr = p.address('default/bystander', 53)
  const c = await udpClient(t)
  const o = await udpClient(t)
  t.equal((await c.request('1', addr.port, addr.address))?.data.toString(), 'a:1')
  t.equal((await o.request('1', oaddr.port, oaddr.address))?.data.toString(), 'o:1')

  await p.apply(svcWithEndpoints('mv', '127.60.0.9', 53, [{ ip: '127.0.46.2', port: b.port }], UDP))
  t.equal(closes.length, 1, 'the session ended with the apply')
  t.equal(closes[0]?.reason, 'removed')
  t.equal(closes[0]?.endpoint, `127.0.46.1:${a.port}`)
  t.equal((await c.request('2', addr.port, addr.address))?.data.toString(), 'b:2', 'same client address, live endpoint')
  t.equal(a.received(), 1, 'nothing more reached the removed endpoint')
  t.equal((await o.request('2', oaddr.port, oaddr.address))?.data.toString(), 'o:2')
  t.equal(runtime(p, 'bystander').accepted, 1, "the other service's session was untouched")
})

/**
 * A client as resolvers are: it asks, and asks again when its datagram was lost. The test knows
 * a datagram was lost when the proxy says so (a dialFailed event naming the client), not by a timer.
 */
async function ask (c: UdpClient, failed: DialFailedEvent[], q: string, port: number, host: string): Promise<string> {
  const me = `127.0.0.1:${c.port}`
  for (let tries = 0; tries < 4; tries++) {
    const lost = failed.filter((e) => e.client === me).length
    c.send(q, port, host)
    if (!await until(() => c.queued() > 0 || failed.filter((e) => e.client === me).length > lost)) return 'no answer, no loss reported'
    if (c.queued() > 0) return (await c.recv())?.data.toString() ?? ''
  }
  return 'lost 4 times'
}

t.test('a refusing endpoint (ICMP port unreachable) is a dial failure: the session moves on, the lost datagram is counted', async (t) => {
  for (const affinity of [false, true]) {
    t.test(affinity ? 'with ClientIP affinity' : 'round-robin', async (t) => {
      const dead = await udpClosedPort('127.0.47.1')
      const good = await udpServer(t, 'good', '127.0.47.2')
      const p = testProxy(t)
      const closes: CloseEvent[] = []
      const failed: DialFailedEvent[] = []
      const endpoints: EndpointEvent[] = []
      p.on('close', (e) => closes.push(e))
      p.on('dialFailed', (e) => failed.push(e))
      p.on('endpoint', (e) => endpoints.push(e))
      const extra = affinity ? { ...UDP, spec: { sessionAffinity: 'ClientIP' } } : UDP
      await p.apply(svcWithEndpoints('refuse', '127.60.0.11', 53, [{ ip: '127.0.47.1', port: dead }, { ip: '127.0.47.2', port: good.port }], extra))
      const addr = p.address('default/refuse', 53)
      const rt = runtime(p, 'refuse')
      const c = await udpClient(t)
      c.send('lost', addr.port, addr.address)
      t.ok(await until(() => failed.length === 1), 'the refusal is a dial failure')
      t.equal(failed[0]?.endpoint, `127.0.47.1:${dead}`)
      t.equal(failed[0]?.attempt, 0)
      t.match(failed[0]?.error, /ECONNREFUSED/)
      t.equal(rt.udpDrops, 1, 'the refused datagram is counted as dropped')
      t.equal(rt.dialFailures, 1)
      t.equal(rt.endpoints[0]?.dialFailures, 1, 'counted on the endpoint')
      t.equal(rt.dialRetries, 1)
      t.equal(c.queued(), 0, 'no reply for the lost datagram')
      t.equal((await c.request('retry', addr.port, addr.address))?.data.toString(), 'good:retry', 'the same session, moved to the live endpoint')
      t.same(closes, [], 'the session did not end')
      t.equal(rt.accepted, 1, 'one session')
      t.equal(p.dataplane.openCount(), 1)
      t.equal(rt.endpoints[0]?.active, 0, 'nothing left on the refusing endpoint')
      t.equal(rt.endpoints[1]?.active, 1)
      t.same(endpoints.map((e) => [e.endpoint, e.attempt]), [[`127.0.47.1:${dead}`, 0], [`127.0.47.2:${good.port}`, 1]])
      if (affinity) {
        // The pin moved with the session: another port of the same client IP goes to the live endpoint at once.
        const c2 = await udpClient(t)
        t.equal((await c2.request('pinned', addr.port, addr.address))?.data.toString(), 'good:pinned')
        t.equal(rt.dialFailures, 1, 'no second refusal')
      }
    })
  }
})

t.test('one refusing endpoint and one live one: every client gets its answer, each loss counted', async (t) => {
  const dead = await udpClosedPort('127.0.55.1')
  const good = await udpServer(t, 'good', '127.0.55.2')
  const p = testProxy(t)
  const failed: DialFailedEvent[] = []
  const closes: CloseEvent[] = []
  p.on('dialFailed', (e) => failed.push(e))
  p.on('close', (e) => closes.push(e))
  await p.apply(svcWithEndpoints('half', '127.60.0.20', 53, [{ ip: '127.0.55.1', port: dead }, { ip: '127.0.55.2', port: good.port }], UDP))
  const addr = p.address('default/half', 53)
  const rt = runtime(p, 'half')
  const clients = await Promise.all(Array.from({ length: 8 }, async () => await udpClient(t)))
  const answers: string[] = []
  for (const [i, c] of clients.entries()) answers.push(await ask(c, failed, `q${i}`, addr.port, addr.address))
  t.same(answers, clients.map((_c, i) => `good:q${i}`), 'every client got its answer from the live endpoint')
  t.ok(failed.length > 0, 'the refusing endpoint was tried')
  t.ok(failed.every((e) => e.endpoint === `127.0.55.1:${dead}`), 'only the refusing endpoint failed')
  t.equal(rt.dialFailures, failed.length, 'each refusal counted as a dial failure')
  t.equal(rt.endpoints[0]?.dialFailures, failed.length, 'on the endpoint too')
  t.equal(rt.udpDrops, failed.length, 'each lost datagram counted as a drop')
  t.equal(rt.accepted, clients.length, 'one session per client, none lost')
  t.equal(rt.udpSessionsActive, clients.length)
  t.equal(rt.endpoints[1]?.active, clients.length, 'every session is on the live endpoint')
  t.same(closes, [])
})

t.test('every endpoint refuses: a session tries 4 (the ladder\'s rungs), then ends dial-failed', async (t) => {
  const ips = [1, 2, 3, 4, 5].map((i) => `127.0.56.${i}`)
  const ports = await Promise.all(ips.map(async (ip) => await udpClosedPort(ip)))
  const p = testProxy(t)
  const failed: DialFailedEvent[] = []
  const closes: CloseEvent[] = []
  p.on('dialFailed', (e) => failed.push(e))
  p.on('close', (e) => closes.push(e))
  await p.apply(svcWithEndpoints('nobody', '127.60.0.21', 53, ips.map((ip, i) => ({ ip, port: ports[i] ?? 0 })), UDP))
  const addr = p.address('default/nobody', 53)
  const rt = runtime(p, 'nobody')
  const c = await udpClient(t)
  t.equal(await ask(c, failed, 'q', addr.port, addr.address), 'lost 4 times')
  t.ok(await until(() => closes.length === 1), 'the session ended')
  t.equal(closes[0]?.reason, 'dial-failed')
  t.same(failed.map((e) => e.attempt), [0, 1, 2, 3])
  t.equal(new Set(failed.map((e) => e.endpoint)).size, 4, 'four different endpoints')
  t.equal(rt.dialFailures, 4)
  t.equal(rt.dialRetries, 3)
  t.equal(rt.udpDrops, 4)
  t.equal(rt.udpSessionsActive, 0)
  t.equal(p.dataplane.openCount(), 0)
})

t.test('the session cap: new clients beyond it are dropped, counted and logged once', async (t) => {
  const be = await udpServer(t, 'a', '127.0.48.1')
  const lines: Array<{ msg: string, reason?: string, dropped?: number }> = []
  const sink = new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(JSON.parse(chunk.toString())); cb() } })
  const p = testProxy(t, { udpMaxSessions: 2, udpTimeoutMs: 200, logger: pino({ level: 'warn' }, sink) })
  await p.apply(svcWithEndpoints('cap', '127.60.0.12', 53, [{ ip: '127.0.48.1', port: be.port }], UDP))
  const addr = p.address('default/cap', 53)
  const rt = runtime(p, 'cap')
  const [c1, c2, c3] = await Promise.all([udpClient(t), udpClient(t), udpClient(t)])
  t.equal((await c1!.request('1', addr.port, addr.address))?.data.toString(), 'a:1')
  t.equal((await c2!.request('2', addr.port, addr.address))?.data.toString(), 'a:2')
  for (let i = 0; i < 3; i++) c3!.send('3', addr.port, addr.address)
  t.ok(await until(() => rt.udpDrops === 3), 'three datagrams dropped')
  t.equal(rt.udpSessionsActive, 2)
  t.equal(be.received(), 2, 'nothing from the third client reached the endpoint')
  t.equal(c3!.queued(), 0)
  const warnings = lines.filter((l) => l.reason === 'sessions-full')
  t.equal(warnings.length, 1, 'one log line for a burst of drops')
  t.match(warnings[0]?.msg, /session table full/)
  // Once the first sessions idle out, the third client gets in.
  t.ok(await until(() => rt.udpSessionsActive === 0), 'the sessions expired')
  t.equal((await c3!.request('3', addr.port, addr.address))?.data.toString(), 'a:3')
})

t.test('no endpoints: datagrams are dropped and counted, then served once endpoints appear', async (t) => {
  const be = await udpServer(t, 'a', '127.0.49.1')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('empty', '127.60.0.13', 53, [], UDP))
  const addr = p.address('default/empty', 53)
  const rt = runtime(p, 'empty')
  const c = await udpClient(t)
  c.send('x', addr.port, addr.address)
  t.ok(await until(() => rt.udpDrops === 1))
  t.equal(rt.noEndpoints, 1)
  t.equal(p.dataplane.openCount(), 0)
  await p.apply(svcWithEndpoints('empty', '127.60.0.13', 53, [{ ip: '127.0.49.1', port: be.port }], UDP))
  t.equal((await c.request('y', addr.port, addr.address))?.data.toString(), 'a:y')
})

t.test('service removed or changed: its socket closes or rebinds; other services keep their sessions', async (t) => {
  const a = await udpServer(t, 'a', '127.0.50.1')
  const o = await udpServer(t, 'o', '127.0.50.2')
  const p = testProxy(t)
  const closes: CloseEvent[] = []
  p.on('close', (e) => closes.push(e))
  await p.apply(svcWithEndpoints('gone', '127.60.0.14', 53, [{ ip: '127.0.50.1', port: a.port }], UDP))
  await p.apply(svcWithEndpoints('stays', '127.60.0.15', 53, [{ ip: '127.0.50.2', port: o.port }], UDP))
  const gaddr = p.address('default/gone', 53)
  const saddr = p.address('default/stays', 53)
  const cg = await udpClient(t)
  const cs = await udpClient(t)
  t.equal((await cg.request('1', gaddr.port, gaddr.address))?.data.toString(), 'a:1')
  t.equal((await cs.request('1', saddr.port, saddr.address))?.data.toString(), 'o:1')

  // Changed: a new clusterIP means a new socket there, and the old one's sessions end.
  await p.apply(svcWithEndpoints('gone', '127.60.0.16', 53, [{ ip: '127.0.50.1', port: a.port }], UDP))
  t.equal(closes.length, 1)
  t.equal(closes[0]?.reason, 'removed')
  const moved = p.address('default/gone', 53)
  t.equal(moved.address, '127.60.0.16')
  t.equal((await cg.request('2', moved.port, moved.address))?.data.toString(), 'a:2')

  await p.delete('service/default/gone')
  t.equal(closes.length, 2)
  t.equal(closes[1]?.reason, 'removed')
  t.equal(closes[1]?.frontend, `127.60.0.16:${moved.port}`)
  t.throws(() => p.address('default/gone', 53), { code: 'SVCPROXY_NOT_FOUND' })
  t.equal((await cg.request('3', moved.port, moved.address, 1, 300)), null, 'the removed service no longer answers')

  t.equal((await cs.request('2', saddr.port, saddr.address))?.data.toString(), 'o:2')
  t.equal(runtime(p, 'stays').accepted, 1, "the other service's session survived both changes")
  t.equal(o.peers().size, 1)
})

t.test('a NodePort UDP service is served on the node address too, replies from there', async (t) => {
  const be = await udpServer(t, 'a', '127.0.51.1')
  const p = testProxy(t, { bindAddress: '127.0.0.1' })
  await p.apply(svcWithEndpoints('np', '127.60.0.17', 53, [{ ip: '127.0.51.1', port: be.port }], { ...UDP, spec: { type: 'NodePort' } }))
  const np = p.address('default/np', 53, 'nodePort')
  t.equal(np.address, '127.0.0.1')
  const c = await udpClient(t)
  const r = await c.request('n', np.port, np.address)
  t.equal(r?.data.toString(), 'a:n')
  t.equal(r?.address, '127.0.0.1')
  t.equal(r?.port, np.port)
  t.same(p.status()[0]?.frontends.map((f) => f.kind).sort(), ['clusterIP', 'nodePort'])
})

t.test('close() ends every session with reason shutdown and leaves no socket open', async (t) => {
  const be = await udpServer(t, 'a', '127.0.52.1')
  const p = testProxy(t)
  const closes: CloseEvent[] = []
  p.on('close', (e) => closes.push(e))
  await p.apply(svcWithEndpoints('bye', '127.60.0.18', 53, [{ ip: '127.0.52.1', port: be.port }], UDP))
  const addr = p.address('default/bye', 53)
  const c = await udpClient(t)
  t.equal((await c.request('1', addr.port, addr.address))?.data.toString(), 'a:1')
  await p.close()
  t.equal(closes.length, 1)
  t.equal(closes[0]?.reason, 'shutdown')
  t.ok([...p.dataplane.frontends.values()].every((f) => f.isClosed() && f.openCount() === 0))
})

// Driven from inside the proxy: a datagram arriving before the upstream connect completes is
// a race on real sockets, but synchronous calls right after openSession always land before it.
t.test('datagrams that arrive while the upstream socket opens wait in a bounded queue', async (t) => {
  const be = await udpServer(t, 'a', '127.0.53.1')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('queue', '127.60.0.19', 53, [{ ip: '127.0.53.1', port: be.port }], UDP))
  const fe = [...p.dataplane.frontends.values()][0] as UdpFrontend
  const rt = runtime(p, 'queue')
  const c = await udpClient(t)

  const s = openSession(fe, '127.0.0.1', c.port)
  if (s === null) throw new Error('no session')
  for (let i = 0; i < 20; i++) forwardUp(s, Buffer.from(String(i)))
  t.equal(s.pending.length, PENDING_MAX_DATAGRAMS, 'the queue stopped at its datagram bound')
  t.equal(rt.udpDrops, 20 - PENDING_MAX_DATAGRAMS, 'the rest were dropped and counted')
  const got: string[] = []
  for (let i = 0; i < PENDING_MAX_DATAGRAMS; i++) got.push((await c.recv())?.data.toString() ?? 'none')
  t.same(got, Array.from({ length: PENDING_MAX_DATAGRAMS }, (_, i) => `a:${i}`), 'queued datagrams went out in order once connected')

  const c2 = await udpClient(t)
  const s2 = openSession(fe, '127.0.0.1', c2.port)
  if (s2 === null) throw new Error('no session')
  const big = randomBytes(60_000)
  for (let i = 0; i < 3; i++) forwardUp(s2, big)
  t.equal(s2.pending.length, Math.floor(PENDING_MAX_BYTES / 60_000), 'the queue stopped at its byte bound')
  t.equal(rt.udpDrops, 20 - PENDING_MAX_DATAGRAMS + 1)
  t.ok(await until(() => be.received() === PENDING_MAX_DATAGRAMS + 2))
})

t.test('an address that cannot be bound is reported, not thrown', async (t) => {
  // 192.0.2.0/24 is TEST-NET-1: never a local address, so bind fails with EADDRNOTAVAIL.
  const p = testProxy(t, { serviceClusterIPRange: '192.0.2.0/24' })
  await p.apply(svcWithEndpoints('nobind', '192.0.2.10', 53, [{ ip: '127.0.54.1', port: 5353 }], UDP))
  const fe = p.status()[0]?.frontends[0]
  t.equal(fe?.state, 'error')
  t.match(fe?.error, /EADDRNOTAVAIL/)
  t.throws(() => p.address('default/nobind', 53), { code: 'SVCPROXY_NOT_FOUND' })
  t.ok(await until(() => [...p.dataplane.frontends.values()].every((f) => f.isClosed())), 'the failed socket was released')
})
