// Faults on UDP sessions (issue 13, lib/udp/toxics.ts) and the UDP session events: real UDP
// sockets on 127.x, a proxy per test, facts waited on (events, counters), never sleeps.
import { once } from 'node:events'
import { createSocket, type Socket } from 'node:dgram'
import t from 'tap'
import type { ServiceProxy } from '../lib/index.js'
import type { DialFailedEvent, FaultEvent, SessionCloseEvent, SessionEvent } from '../lib/frontend/events.js'
import type { ToxicType } from '../lib/faults/toxic.js'
import type { ServicePortRuntime } from '../lib/frontend/runtime.js'
import type { UdpFrontend } from '../lib/udp/frontend.js'
import { svcWithEndpoints, testProxy, udpClient, until } from './helpers.js'

const UDP = { protocol: 'UDP' }

/** A UDP endpoint that keeps every datagram it got, in order, and echoes it prefixed with its name. */
async function recorder (tt: { teardown: (fn: () => unknown) => void }, host: string, name = 'e'): Promise<{ port: number, sock: Socket, got: string[] }> {
  const sock = createSocket('udp4')
  const got: string[] = []
  sock.on('error', () => {})
  sock.on('message', (m, r) => {
    got.push(m.toString())
    sock.send(`${name}:${m.toString()}`, r.port, r.address)
  })
  sock.bind(0, host)
  await once(sock, 'listening')
  tt.teardown(() => { try { sock.close() } catch {} })
  return { port: sock.address().port, sock, got }
}

function runtime (p: ServiceProxy, name: string): ServicePortRuntime {
  for (const rt of p.dataplane.runtimes.values()) if (rt.service === name) return rt
  throw new Error(`no runtime for ${name}`)
}

function frontend (p: ServiceProxy): UdpFrontend {
  return [...p.dataplane.frontends.values()][0] as UdpFrontend
}

/** Datagrams toxics of `type` have affected so far on the service's (only) port: dropped, delayed, duplicated, held. */
function affected (p: ServiceProxy, service: string, type: ToxicType): number {
  return runtime(p, service).faultCounts?.datagrams.get(type) ?? 0
}

t.test('loss 1 upstream drops every datagram to the endpoint; downstream loss drops every reply', async (t) => {
  t.test('upstream', async (t) => {
    const be = await recorder(t, '127.0.70.1')
    const p = testProxy(t)
    await p.apply(svcWithEndpoints('lossup', '127.61.0.1', 53, [{ ip: '127.0.70.1', port: be.port }], UDP))
    p.faults.add({ service: 'default/lossup' }, { name: 'drop', type: 'loss', stream: 'upstream', attributes: { probability: 1 } })
    const addr = p.address('default/lossup', 53)
    const c = await udpClient(t)
    for (let i = 0; i < 20; i++) c.send(`q${i}`, addr.port, addr.address)
    t.ok(await until(() => affected(p, 'lossup', 'loss') === 20), 'every datagram counted as affected')
    t.same(be.got, [], 'the endpoint got none')
    t.equal(runtime(p, 'lossup').udpDatagramsUp, 0, 'nothing forwarded')
  })
  t.test('downstream', async (t) => {
    const be = await recorder(t, '127.0.70.2')
    const p = testProxy(t)
    await p.apply(svcWithEndpoints('lossdown', '127.61.0.2', 53, [{ ip: '127.0.70.2', port: be.port }], UDP))
    p.faults.add({ service: 'default/lossdown' }, { name: 'drop', type: 'loss', stream: 'downstream', attributes: { probability: 1 } })
    const addr = p.address('default/lossdown', 53)
    const c = await udpClient(t)
    for (let i = 0; i < 20; i++) c.send(`q${i}`, addr.port, addr.address)
    t.ok(await until(() => be.got.length === 20), 'the endpoint got every datagram')
    t.ok(await until(() => affected(p, 'lossdown', 'loss') === 20), 'every reply dropped and counted')
    t.equal(c.queued(), 0, 'the client got no reply')
    t.equal(runtime(p, 'lossdown').udpDatagramsDown, 0)
  })
})

t.test('loss 0.5 with a seeded proxy: about half arrive, and the same half on every run', async (t) => {
  const run = async (host: string, vip: string): Promise<string[]> => {
    const be = await recorder(t, host)
    const p = testProxy(t, { seed: 42 })
    await p.apply(svcWithEndpoints('half', vip, 53, [{ ip: host, port: be.port }], UDP))
    p.faults.add({ service: 'default/half' }, { name: 'half', type: 'loss', stream: 'upstream', attributes: { probability: 0.5 } })
    const addr = p.address('default/half', 53)
    const c = await udpClient(t)
    // In batches of 100, each seen through before the next: the endpoint's socket buffer never overflows.
    for (let b = 0; b < 10; b++) {
      for (let i = 0; i < 100; i++) c.send(`d${b * 100 + i}`, addr.port, addr.address)
      const want = (b + 1) * 100
      t.ok(await until(() => be.got.length + affected(p, 'half', 'loss') === want), `batch ${b} accounted for`)
    }
    await p.close()
    return be.got
  }
  const first = await run('127.0.71.1', '127.61.0.3')
  t.ok(first.length >= 350 && first.length <= 650, `about half of 1000 arrive (${first.length})`)
  const second = await run('127.0.71.2', '127.61.0.4')
  t.same(second, first, 'the same seed loses the same datagrams')
})

t.test('latency: a reply takes at least the delay; without jitter order is kept', async (t) => {
  const be = await recorder(t, '127.0.72.1')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('slow', '127.61.0.5', 53, [{ ip: '127.0.72.1', port: be.port }], UDP))
  p.faults.add({ service: 'default/slow' }, { name: 'lag', type: 'latency', stream: 'upstream', attributes: { latency: 150 } })
  const addr = p.address('default/slow', 53)
  const c = await udpClient(t)
  const t0 = performance.now()
  const r = await c.request('ping', addr.port, addr.address, 1, 10_000)
  const took = performance.now() - t0
  t.equal(r?.data.toString(), 'e:ping')
  t.ok(took >= 150, `round trip ${took.toFixed(1)} ms >= 150 ms`)
  for (let i = 0; i < 20; i++) c.send(`m${i}`, addr.port, addr.address)
  t.ok(await until(() => be.got.length === 21))
  t.same(be.got.slice(1), Array.from({ length: 20 }, (_, i) => `m${i}`), 'delivered in order')
})

t.test('duplicate with probability 1: the endpoint sees every datagram twice', async (t) => {
  const be = await recorder(t, '127.0.73.1')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('dup', '127.61.0.6', 53, [{ ip: '127.0.73.1', port: be.port }], UDP))
  p.faults.add({ service: 'default/dup' }, { name: 'twice', type: 'duplicate', stream: 'upstream', attributes: { probability: 1 } })
  const addr = p.address('default/dup', 53)
  const c = await udpClient(t)
  for (let i = 0; i < 10; i++) c.send(`x${i}`, addr.port, addr.address)
  t.ok(await until(() => be.got.length === 20), 'twenty datagrams for ten sent')
  t.same(be.got, Array.from({ length: 10 }, (_, i) => [`x${i}`, `x${i}`]).flat())
  t.equal(affected(p, 'dup', 'duplicate'), 10)
  t.ok(await until(() => c.queued() === 20), 'and the client twenty replies')
  // Metrics: the toxic active, the session it applied to, the datagrams and bytes it affected.
  const { renderMetrics } = await import('../lib/admin/collect.js')
  const { ProcessStats } = await import('../lib/admin/process-stats.js')
  const stats = new ProcessStats()
  t.teardown(() => stats.close())
  const text = await renderMetrics({ proxy: p, health: () => ({ kind: 'api', synced: true, stale: false, reason: '', lastSyncedAt: 0, revision: 0 }), process: stats })
  const series = (name: string): string => `\n${name}\{namespace="default",service="dup",port="53",type="duplicate"\} `
  t.match(text, new RegExp(`${series('svcproxy_faults_active')}1\n`))
  t.match(text, new RegExp(`${series('svcproxy_fault_connections_total')}1\n`))
  t.match(text, new RegExp(`${series('svcproxy_fault_datagrams_total')}10\n`))
  t.match(text, new RegExp(`${series('svcproxy_fault_bytes_total')}20\n`), 'ten 2-byte datagrams')
  t.match(p.status()[0]?.faults, [{ name: 'twice', type: 'duplicate', stream: 'upstream' }], 'status() lists the toxic')
})

t.test('reorder with probability 1: each datagram goes after the next one', async (t) => {
  const be = await recorder(t, '127.0.74.1')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('reo', '127.61.0.7', 53, [{ ip: '127.0.74.1', port: be.port }], UDP))
  p.faults.add({ service: 'default/reo' }, { name: 'swap', type: 'reorder', stream: 'upstream', attributes: { probability: 1 } })
  const addr = p.address('default/reo', 53)
  const c = await udpClient(t)
  const sent = Array.from({ length: 10 }, (_, i) => `r${i}`)
  for (const m of sent) c.send(m, addr.port, addr.address)
  t.ok(await until(() => be.got.length === 10), 'all ten arrive')
  t.not(be.got.join(','), sent.join(','), 'in another order')
  t.same([...be.got].sort(), [...sent].sort(), 'none lost, none doubled')
  t.same(be.got, ['r1', 'r0', 'r3', 'r2', 'r5', 'r4', 'r7', 'r6', 'r9', 'r8'])
  // A held datagram with no next one goes anyway, after the reorder delay.
  c.send('last', addr.port, addr.address)
  t.ok(await until(() => be.got.length === 11), 'a lone held datagram is not lost')
})

t.test('endpoint scope: only sessions on that endpoint get the toxic', async (t) => {
  const a = await recorder(t, '127.0.75.1', 'a')
  const b = await recorder(t, '127.0.75.2', 'b')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('scoped', '127.61.0.8', 53, [{ ip: '127.0.75.1', port: a.port }, { ip: '127.0.75.2', port: b.port }], UDP))
  p.faults.add({ service: 'default/scoped', endpoint: `127.0.75.1:${a.port}` }, { name: 'only-a', type: 'loss', stream: 'upstream', attributes: { probability: 1 } })
  const addr = p.address('default/scoped', 53)
  const c1 = await udpClient(t)
  const c2 = await udpClient(t)
  c1.send('one', addr.port, addr.address) // round-robin: a
  t.ok(await until(() => affected(p, 'scoped', 'loss') === 1), 'the datagram to a was dropped')
  t.equal((await c2.request('two', addr.port, addr.address))?.data.toString(), 'b:two', 'b is untouched')
  t.same(a.got, [])
})

t.test('added, changed and removed while a session flows', async (t) => {
  const be = await recorder(t, '127.0.76.1')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('live', '127.61.0.9', 53, [{ ip: '127.0.76.1', port: be.port }], UDP))
  const addr = p.address('default/live', 53)
  const c = await udpClient(t)
  t.equal((await c.request('before', addr.port, addr.address))?.data.toString(), 'e:before')
  p.faults.add({ service: 'default/live' }, { name: 'cut', type: 'loss', stream: 'upstream', attributes: { probability: 1 } })
  c.send('during', addr.port, addr.address)
  t.ok(await until(() => affected(p, 'live', 'loss') === 1), 'the open session got the new toxic')
  p.faults.update({ service: 'default/live' }, 'cut', { attributes: { probability: 0 } })
  t.equal((await c.request('changed', addr.port, addr.address))?.data.toString(), 'e:changed', 'a changed toxic applies at once')
  p.faults.update({ service: 'default/live' }, 'cut', { attributes: { probability: 1 } })
  c.send('again', addr.port, addr.address)
  t.ok(await until(() => affected(p, 'live', 'loss') === 2), 'and back')
  p.faults.remove({ service: 'default/live' }, 'cut')
  t.equal((await c.request('after', addr.port, addr.address))?.data.toString(), 'e:after', 'and lost it when removed')
  t.same(be.got, ['before', 'changed', 'after'])
  t.equal(p.status()[0]?.accepted, 1, 'one session throughout')
})

t.test('a latency toxic removed while it holds datagrams: they keep their delay, later ones go at once', async (t) => {
  // Alone (the port's set goes null) and next to another toxic (the session's pipe is retired).
  for (const [i, other] of [false, true].entries()) {
    t.test(other ? 'another toxic stays' : 'the last toxic', async (t) => {
      const be = await recorder(t, `127.0.76.${2 + i}`)
      const p = testProxy(t)
      const at = new Map<string, number>()
      be.sock.on('message', (m) => at.set(m.toString(), performance.now()))
      await p.apply(svcWithEndpoints('unlag', `127.61.0.${18 + i}`, 53, [{ ip: `127.0.76.${2 + i}`, port: be.port }], UDP))
      p.faults.add({ service: 'default/unlag' }, { name: 'lag', type: 'latency', stream: 'upstream', attributes: { latency: 1500 } })
      if (other) p.faults.add({ service: 'default/unlag' }, { name: 'keep', type: 'duplicate', stream: 'upstream', attributes: { probability: 0 } })
      const addr = p.address('default/unlag', 53)
      const c = await udpClient(t)
      const t0 = performance.now()
      c.send('held', addr.port, addr.address)
      t.ok(await until(() => affected(p, 'unlag', 'latency') === 1), 'held by the toxic')
      p.faults.remove({ service: 'default/unlag' }, 'lag')
      t.equal(runtime(p, 'unlag').faults === null, !other, other ? 'the other toxic is left' : 'no toxic left on the port')
      t.equal((await c.request('fast', addr.port, addr.address, 1, 10_000))?.data.toString(), 'e:fast', 'a datagram after the removal is not delayed')
      t.ok(await until(() => be.got.length === 2), 'the held one arrives too')
      t.same(be.got, ['fast', 'held'], 'after the later one')
      t.ok((at.get('held') ?? 0) - t0 >= 1500, 'when its delay was up')
    })
  }
})

t.test('toxicity is rolled once per session: 0 never applies, and emits no fault event', async (t) => {
  const be = await recorder(t, '127.0.77.1')
  const p = testProxy(t, { seed: 7 })
  const faults: FaultEvent[] = []
  p.on('fault', (e) => faults.push(e))
  await p.apply(svcWithEndpoints('tox', '127.61.0.10', 53, [{ ip: '127.0.77.1', port: be.port }], UDP))
  p.faults.add({ service: 'default/tox' }, { name: 'never', type: 'loss', stream: 'upstream', toxicity: 0, attributes: { probability: 1 } })
  p.faults.add({ service: 'default/tox' }, { name: 'always', type: 'duplicate', stream: 'upstream', toxicity: 1, attributes: { probability: 1 } })
  const addr = p.address('default/tox', 53)
  const c = await udpClient(t)
  c.send('a', addr.port, addr.address)
  t.ok(await until(() => be.got.length === 2), 'duplicated, not lost')
  t.equal(faults.length, 1, 'one fault event: the toxic the session got')
  t.match(faults[0], { service: 'default/tox', port: '53', protocol: 'UDP', endpoint: `127.0.77.1:${be.port}`, toxic: 'always', type: 'duplicate', stream: 'upstream' })
  t.equal(typeof faults[0]?.id, 'number')
})

t.test('sessionOpen and sessionClose carry the session, its endpoint and datagram counts', async (t) => {
  const be = await recorder(t, '127.0.78.1')
  const p = testProxy(t, { udpTimeoutMs: 100 })
  const opens: SessionEvent[] = []
  const closes: SessionCloseEvent[] = []
  p.on('sessionOpen', (e) => opens.push(e))
  p.on('sessionClose', (e) => closes.push(e))
  await p.apply(svcWithEndpoints('ev', '127.61.0.11', 53, [{ ip: '127.0.78.1', port: be.port }], UDP))
  const addr = p.address('default/ev', 53)
  const c = await udpClient(t)
  t.equal((await c.request('1', addr.port, addr.address))?.data.toString(), 'e:1')
  t.equal((await c.request('2', addr.port, addr.address))?.data.toString(), 'e:2')
  c.send('3', addr.port, addr.address)
  t.ok(await until(() => closes.length === 1), 'closed when idle')
  const base = { service: 'default/ev', port: '53', protocol: 'UDP', client: `127.0.0.1:${c.port}`, frontend: `127.61.0.11:${addr.port}`, endpoint: `127.0.78.1:${be.port}` }
  t.equal(opens.length, 1)
  t.match(opens[0], base)
  t.match(closes[0], { ...base, id: opens[0]?.id, datagramsIn: 3, datagramsOut: 3, reason: 'idle-timeout' })
  t.ok((closes[0]?.durationMs ?? -1) >= 0)
})

t.test('close() with datagrams held by a latency toxic: they are dropped, no timer or socket left', async (t) => {
  const be = await recorder(t, '127.0.79.1')
  const p = testProxy(t)
  const closes: SessionCloseEvent[] = []
  p.on('sessionClose', (e) => closes.push(e))
  await p.apply(svcWithEndpoints('held', '127.61.0.12', 53, [{ ip: '127.0.79.1', port: be.port }], UDP))
  p.faults.add({ service: 'default/held' }, { name: 'lag', type: 'latency', stream: 'upstream', attributes: { latency: 60_000 } })
  const addr = p.address('default/held', 53)
  const c = await udpClient(t)
  for (let i = 0; i < 5; i++) c.send(`h${i}`, addr.port, addr.address)
  t.ok(await until(() => affected(p, 'held', 'latency') === 5), 'five datagrams held')
  const fe = frontend(p)
  const s = fe.find('127.0.0.1', c.port)
  t.ok(s?.tx !== null && s?.tx !== undefined, 'the session holds toxics')
  const rt = runtime(p, 'held')
  const drops = rt.udpDrops
  await p.close()
  t.equal(closes.length, 1)
  t.equal(closes[0]?.reason, 'shutdown')
  t.equal(s?.tx, null, 'the toxics are gone with their timers')
  t.equal(rt.udpDrops - drops, 5, 'the held datagrams are counted as dropped (session-ended)')
  t.ok(fe.isClosed() || await until(() => fe.isClosed()), 'the service socket is closed')
  t.same(be.got, [], 'nothing was sent after close')
})

t.test('down on an endpoint: refuse moves the session on, blackhole makes datagrams vanish', async (t) => {
  t.test('refuse', async (t) => {
    const a = await recorder(t, '127.0.80.1', 'a')
    const b = await recorder(t, '127.0.80.2', 'b')
    const p = testProxy(t)
    const failed: DialFailedEvent[] = []
    p.on('dialFailed', (e) => failed.push(e))
    await p.apply(svcWithEndpoints('refuse', '127.61.0.13', 53, [{ ip: '127.0.80.1', port: a.port }, { ip: '127.0.80.2', port: b.port }], UDP))
    p.faults.add({ service: 'default/refuse', endpoint: `127.0.80.1:${a.port}` }, { name: 'off', type: 'down', attributes: { mode: 'refuse' } })
    const addr = p.address('default/refuse', 53)
    const c = await udpClient(t)
    c.send('lost', addr.port, addr.address) // round-robin: a, refused like an ICMP unreachable
    t.ok(await until(() => failed.length === 1), 'a dial failure')
    t.match(failed[0], { endpoint: `127.0.80.1:${a.port}`, attempt: 0 })
    t.match(failed[0]?.error, /ECONNREFUSED/)
    t.equal((await c.request('again', addr.port, addr.address))?.data.toString(), 'b:again', 'the same session answers from b')
    const rt = runtime(p, 'refuse')
    t.equal(rt.accepted, 1, 'one session')
    t.equal(rt.udpDrops, 1, 'the refused datagram counted as a drop')
    t.same(a.got, [])
  })
  t.test('blackhole', async (t) => {
    const a = await recorder(t, '127.0.80.3')
    const p = testProxy(t)
    const closes: SessionCloseEvent[] = []
    p.on('sessionClose', (e) => closes.push(e))
    await p.apply(svcWithEndpoints('hole', '127.61.0.14', 53, [{ ip: '127.0.80.3', port: a.port }], UDP))
    p.faults.add({ service: 'default/hole', endpoint: `127.0.80.3:${a.port}` }, { name: 'hole', type: 'down', attributes: { mode: 'blackhole' } })
    const addr = p.address('default/hole', 53)
    const c = await udpClient(t)
    for (let i = 0; i < 5; i++) c.send(`v${i}`, addr.port, addr.address)
    t.ok(await until(() => affected(p, 'hole', 'down') === 5), 'five datagrams vanished, counted')
    t.same(a.got, [])
    t.equal(runtime(p, 'hole').dialFailures, 0, 'no refusal: nothing tells the session')
    await p.close()
    t.match(closes[0], { datagramsIn: 0, datagramsOut: 0, reason: 'shutdown' })
  })
})

t.test('an unobserved proxy builds no event objects; a port without faults keeps the plain path', async (t) => {
  const be = await recorder(t, '127.0.81.1')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('plain', '127.61.0.15', 53, [{ ip: '127.0.81.1', port: be.port }], UDP))
  const rt = runtime(p, 'plain')
  t.equal(rt.faults, null, 'no fault set on a port without toxics')
  const addr = p.address('default/plain', 53)
  const c = await udpClient(t)
  t.equal((await c.request('x', addr.port, addr.address))?.data.toString(), 'e:x')
  const s = frontend(p).find('127.0.0.1', c.port)
  t.equal(s?.tx, null, 'the session holds no toxics')
  t.equal(s?.datagramsIn, 1)
  t.equal(s?.datagramsOut, 1)
  // Toxics on another service leave this port's set null.
  p.faults.add({ service: 'default/other' }, { type: 'loss', attributes: { probability: 1 } })
  t.equal(rt.faults, null)
  t.equal((await c.request('y', addr.port, addr.address))?.data.toString(), 'e:y')
  // Nobody listens: no session event, and no fault event when a toxic applies, is ever emitted.
  const emitted: string[] = []
  const emit = p.emit.bind(p)
  p.emit = ((name: string, ...args: unknown[]) => { emitted.push(name); return (emit as (n: string, ...a: unknown[]) => boolean)(name, ...args) }) as typeof p.emit
  p.faults.add({ service: 'default/plain' }, { type: 'duplicate', stream: 'upstream', attributes: { probability: 1 } })
  const c2 = await udpClient(t)
  c2.send('z', addr.port, addr.address)
  t.ok(await until(() => be.got.length === 4), 'a new session, its datagram doubled')
  await p.close()
  t.same(emitted.filter((n) => ['accept', 'sessionOpen', 'sessionClose', 'fault', 'close', 'endpoint'].includes(n)), [])
})

t.test('latency with jitter stays within its bounds and loses nothing', async (t) => {
  const be = await recorder(t, '127.0.82.1')
  const p = testProxy(t, { seed: 3 })
  await p.apply(svcWithEndpoints('jit', '127.61.0.16', 53, [{ ip: '127.0.82.1', port: be.port }], UDP))
  p.faults.add({ service: 'default/jit' }, { type: 'latency', stream: 'downstream', attributes: { latency: 40, jitter: 30 } })
  const addr = p.address('default/jit', 53)
  const c = await udpClient(t)
  const t0 = performance.now()
  for (let i = 0; i < 50; i++) c.send(`j${i}`, addr.port, addr.address)
  t.ok(await until(() => c.queued() === 50), 'every reply arrives')
  t.ok(performance.now() - t0 >= 10, 'none before latency - jitter')
  t.equal(affected(p, 'jit', 'latency'), 50)
})

t.test('a latency toxic holds at most FAULT_HOLD_MAX_DATAGRAMS per session and stream; the rest is dropped and counted', async (t) => {
  const { FAULT_HOLD_MAX_DATAGRAMS } = await import('../lib/udp/toxics.js')
  const be = await recorder(t, '127.0.83.1')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('cap', '127.61.0.17', 53, [{ ip: '127.0.83.1', port: be.port }], UDP))
  p.faults.add({ service: 'default/cap' }, { type: 'latency', stream: 'upstream', attributes: { latency: 60_000 } })
  const addr = p.address('default/cap', 53)
  const c = await udpClient(t)
  const rt = runtime(p, 'cap')
  const extra = 50
  // In batches, each seen through before the next, so no socket buffer on the way overflows.
  for (let sent = 0; sent < FAULT_HOLD_MAX_DATAGRAMS + extra;) {
    const n = Math.min(100, FAULT_HOLD_MAX_DATAGRAMS + extra - sent)
    for (let i = 0; i < n; i++) c.send(`c${sent + i}`, addr.port, addr.address)
    sent += n
    t.ok(await until(() => affected(p, 'cap', 'latency') + rt.udpDrops === sent), `${sent} accounted for`)
  }
  t.equal(affected(p, 'cap', 'latency'), FAULT_HOLD_MAX_DATAGRAMS, 'the queue is full')
  t.equal(rt.udpDrops, extra, 'the rest dropped (fault-queue-full)')
  t.same(be.got, [])
  await p.close()
  t.equal(rt.udpDrops, extra + FAULT_HOLD_MAX_DATAGRAMS, 'what was held is dropped at close (session-ended)')
})
