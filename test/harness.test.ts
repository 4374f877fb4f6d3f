// The harness API (issue 13, parts 2, 3, 5): awaitable events (waitFor, the events iterator, the
// 'endpoints' event), determinism (createProxy({ seed }), explain()), and many proxies in one
// process that never collide and leave nothing open. Real sockets on 127.x addresses.
import { createHook } from 'node:async_hooks'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect } from 'node:net'
import t from 'tap'
import { ClosedError, ConfigError, EventOverflowError, type ServiceProxy, WaitTimeoutError } from '../lib/index.js'
import type { EndpointsChangedEvent } from '../lib/frontend/events.js'
import { endpointSlice as slice, fetchAll, nameServer, svcWithEndpoints, testProxy, udpClient, udpServer, until } from './helpers.js'

type Raw = Record<string, unknown>
type T = { teardown: (fn: () => unknown) => void }

const EVENT_NAMES = ['accept', 'endpoint', 'dialFailed', 'close', 'endpoints', 'sessionOpen', 'sessionClose', 'fault', 'endpointHealth'] as const
const listeners = (p: ServiceProxy): number => EVENT_NAMES.reduce((n, e) => n + p.listenerCount(e), 0)

/** `n` backends on 127.0.0.1 that answer with their name, in the balancer's order (by port). */
async function backends (t: T, n: number, prefix = 'b'): Promise<Array<{ ip: string, port: number, name: string }>> {
  const out: Array<{ ip: string, port: number, name: string }> = []
  for (let i = 0; i < n; i++) out.push({ ip: '127.0.0.1', port: (await nameServer(t, `${prefix}${i}`)).port, name: `${prefix}${i}` })
  return out.sort((x, y) => x.port - y.port)
}


const svc = (name: string, clusterIP: string, spec: Raw = {}, extra: Raw = {}): Raw =>
  ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { clusterIP, ports: [{ port: 80 }], ...spec }, ...extra })

// ------------------------------------------------------------------------------ waitFor

t.test('waitFor resolves with the first matching event, and removes its listener', async (t) => {
  const [a, b] = await backends(t, 2)
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('web', '127.96.40.1', 80, [a!, b!]))
  const addr = p.address('default/web', 80)
  const want = `127.0.0.1:${b!.port}`
  const w = p.waitFor('close', (e) => e.endpoint === want)
  t.equal(p.listenerCount('close'), 1)
  t.equal(await fetchAll(addr.address, addr.port), a!.name)
  t.equal(await fetchAll(addr.address, addr.port), b!.name)
  const e = await w
  t.equal(e.endpoint, want)
  t.equal(e.service, 'default/web')
  t.equal(listeners(p), 0, 'no listener left')
})

t.test('waitFor rejects with a clear timeout error naming the event and the predicate', async (t) => {
  const [a] = await backends(t, 1)
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('web', '127.96.40.2', 80, [a!]))
  const addr = p.address('default/web', 80)
  // One 'close' that does not match happens first; the error says so, with the event.
  const seen = p.waitFor('close')
  const w = p.waitFor('close', (e) => e.endpoint === '10.9.9.9:1', { timeout: 300 }).then(() => null, (err: unknown) => err)
  await fetchAll(addr.address, addr.port)
  await seen
  const err = await w
  t.ok(err instanceof WaitTimeoutError, String(err))
  const e = err as WaitTimeoutError
  t.equal(e.code, 'SVCPROXY_TIMEOUT')
  t.match(e.message, /^waitFor\('close'\) timed out after 300 ms: no 'close' event matched \(e\) => e\.endpoint === '10\.9\.9\.9:1'/)
  t.match(e.message, /1 'close' event did not match, the last: \{.*"service":"default\/web"/)
  t.equal(e.event, 'close')
  t.equal(e.seen, 1)
  t.equal(e.timeoutMs, 300)

  const d = await p.waitFor('endpoints', null, { timeout: 10, label: 'web to have 3 endpoints' }).then(() => null, (x: unknown) => x)
  t.match(String(d), /waitFor\('endpoints'\) timed out after 10 ms: no 'endpoints' event matched web to have 3 endpoints; no 'endpoints' event at all/)
  const bad = await p.waitFor('closed' as 'close').then(() => null, (x: unknown) => x)
  t.ok(bad instanceof ConfigError && /unknown event "closed"/.test(bad.message), String(bad))
  t.equal(listeners(p), 0, 'no listener left after timeouts')
})

t.test('waitFor rejects with ClosedError when the proxy closes, and at once on a closed proxy', async (t) => {
  const p = testProxy(t)
  const w = p.waitFor('close', (e) => e.reason === 'backend-error', { timeout: 60_000 }).then(() => null, (x: unknown) => x)
  await p.close()
  const err = await w
  t.ok(err instanceof ClosedError, String(err))
  t.match(String(err), /proxy closed while waiting for 'close' matching \(e\) => e\.reason === 'backend-error'/)
  t.ok((await p.waitFor('accept').then(() => null, (x: unknown) => x)) instanceof ClosedError)
  t.equal(listeners(p), 0)
})

t.test('waitFor and events() end on an AbortSignal, listeners removed', async (t) => {
  const p = testProxy(t)
  const ac = new AbortController()
  const w = p.waitFor('close', null, { signal: ac.signal }).then(() => null, (x: unknown) => x)
  const it = p.events({ signal: ac.signal })
  t.equal(p.listenerCount('close'), 2)
  ac.abort(new Error('test over'))
  t.match(String(await w), /test over/)
  t.same(await it.next(), { value: undefined, done: true })
  t.equal(listeners(p), 0)
  const pre = await p.waitFor('close', null, { signal: ac.signal }).then(() => null, (x: unknown) => x)
  t.match(String(pre), /test over/, 'an aborted signal rejects at once')
  t.equal(listeners(p), 0)
})

// ------------------------------------------------------------------------------ events()

t.test('events() streams one service\'s events, filtered, and stops cleanly on break', async (t) => {
  const [a, b] = await backends(t, 2)
  const p = testProxy(t)
  await p.apply([...svcWithEndpoints('web', '127.96.40.3', 80, [a!]), ...svcWithEndpoints('api', '127.96.40.4', 80, [b!])])
  const web = p.address('default/web', 80)
  const api = p.address('default/api', 80)
  const it = p.events({ service: 'web', types: ['accept', 'close'] })
  t.equal(p.listenerCount('accept'), 1)
  t.equal(p.listenerCount('endpoint'), 0, 'only the types asked for are listened to')
  t.equal(await fetchAll(api.address, api.port), b!.name)
  t.equal(await fetchAll(web.address, web.port), a!.name)
  const got: string[] = []
  for await (const e of it) {
    got.push(`${e.type} ${e.service}`)
    if (e.type === 'close') { t.equal(e.endpoint, `127.0.0.1:${a!.port}`); break }
  }
  t.same(got, ['accept default/web', 'close default/web'], 'api\'s events filtered out')
  t.equal(listeners(p), 0, 'break removed every listener')
  t.same(await it.next(), { value: undefined, done: true })
})

t.test('events() filters by port (a number matches a named port), ends when the proxy closes', async (t) => {
  const [a] = await backends(t, 1)
  const p = testProxy(t)
  const named = svcWithEndpoints('web', '127.96.40.5', 80, [a!]) as Raw[]
  ;(((named[0] as Raw).spec as Raw).ports as Raw[])[0]!.name = 'http'
  ;((((named[1] as Raw).subsets as Raw[])[0] as Raw).ports as Raw[])[0]!.name = 'http'
  const byNumber = p.events({ service: 'default/web', port: 80, types: ['endpoints'] })
  const other = p.events({ service: 'default/web', port: 81, types: ['endpoints'] })
  await p.apply(named)
  const first = await byNumber.next()
  t.equal(first.done, false)
  t.same(first.value, { type: 'endpoints', service: 'default/web', port: 'http', protocol: 'TCP', endpoints: [`127.0.0.1:${a!.port}`] })
  await p.close()
  t.same(await byNumber.next(), { value: undefined, done: true }, 'ends after close')
  t.same(await other.next(), { value: undefined, done: true }, 'port 81 saw nothing')
  t.equal(listeners(p), 0)
})

t.test('events() fails loudly when its reader falls behind bufferSize', async (t) => {
  const [a, b] = await backends(t, 2)
  const p = testProxy(t)
  const it = p.events({ types: ['endpoints'], bufferSize: 2 })
  await p.apply(svcWithEndpoints('web', '127.96.40.6', 80, [a!]))
  await p.apply(svcWithEndpoints('web', '127.96.40.6', 80, [a!, b!]))
  await p.apply(svcWithEndpoints('web', '127.96.40.6', 80, [b!]))
  const err = await it.next().then(() => null, (x: unknown) => x)
  t.ok(err instanceof EventOverflowError, String(err))
  t.equal((err as EventOverflowError).code, 'SVCPROXY_EVENTS_OVERFLOW')
  t.equal(listeners(p), 0)
})

// ------------------------------------------------------------------------------ 'endpoints'

t.test('endpoints event: once per change of a port\'s serving set, never for an unchanged one', async (t) => {
  const [a, b] = await backends(t, 2)
  const p = testProxy(t)
  const seen: EndpointsChangedEvent[] = []
  p.on('endpoints', (e) => seen.push(e))
  const ka = `127.0.0.1:${a!.port}`
  const kb = `127.0.0.1:${b!.port}`
  await p.apply(svcWithEndpoints('web', '127.96.40.7', 80, [a!, b!]))
  await p.apply(svcWithEndpoints('web', '127.96.40.7', 80, [a!, b!])) // the same: nothing
  await p.apply(svcWithEndpoints('web', '127.96.40.7', 80, [b!]))
  await p.delete('Service default/web')
  t.same(seen.map((e) => `${e.service}:${e.port} ${e.endpoints.join(',')}`), [
    `default/web:80 ${[ka, kb].join(',')}`,
    `default/web:80 ${kb}`,
    'default/web:80 ',
  ])
})

t.test('an unobserved proxy builds no event objects (emit is never called), an observed one only for what is listened to', async (t) => {
  const [a] = await backends(t, 1)
  const p = testProxy(t)
  const emitted: string[] = []
  const emit = p.emit.bind(p)
  p.emit = ((name: string, ...args: unknown[]) => { emitted.push(name); return (emit as (n: string, ...a: unknown[]) => boolean)(name, ...args) }) as typeof p.emit
  await p.apply(svcWithEndpoints('web', '127.96.40.8', 80, [a!]))
  const addr = p.address('default/web', 80)
  t.equal(await fetchAll(addr.address, addr.port), a!.name)
  // A UDP session and faults on both paths: still nothing.
  const u = await udpServer(t, 'u')
  await p.apply(svcWithEndpoints('dns', '127.96.40.9', 53, [{ ip: '127.0.0.1', port: u.port }], { protocol: 'UDP' }))
  p.faults.add({ service: 'default/web' }, { type: 'latency', attributes: { latency: 1 } })
  p.faults.add({ service: 'default/dns' }, { type: 'latency', attributes: { latency: 1 } })
  t.equal(await fetchAll(addr.address, addr.port), a!.name)
  const dns = p.address('default/dns', 53)
  const c = await udpClient(t)
  t.equal(String((await c.request('q', dns.port, dns.address, 5))?.data), 'u:q')
  await p.delete('Service default/dns')
  await p.apply(svcWithEndpoints('web', '127.96.40.8', 80, []))
  t.same(emitted, [], 'nothing emitted without listeners')
  await p.apply(svcWithEndpoints('web', '127.96.40.8', 80, [a!]))
  const w = p.waitFor('close')
  t.equal(await fetchAll(addr.address, addr.port), a!.name)
  await w
  t.same(emitted, ['close'], 'only the awaited event')
})

// ------------------------------------------------------------------------------ seed

/** The endpoints `n` connections in a row get, by backend name. */
async function picks (p: ServiceProxy, n: number): Promise<string[]> {
  const a = p.address('default/web', 80)
  const out: string[] = []
  for (let i = 0; i < n; i++) out.push(await fetchAll(a.address, a.port))
  return out
}

t.test('seed: the same seed gives the same random picks in two proxies, another seed others', async (t) => {
  const eps = await backends(t, 4)
  const run = async (seed: number, clusterIP: string): Promise<string[]> => {
    const p = testProxy(t, { seed, loadBalancer: 'random' })
    await p.apply(svcWithEndpoints('web', clusterIP, 80, eps))
    return await picks(p, 16)
  }
  const one = await run(42, '127.96.41.1')
  const two = await run(42, '127.96.41.2')
  const other = await run(7, '127.96.41.3')
  t.same(two, one, `seed 42 twice: ${one.join(' ')}`)
  t.not(other.join(' '), one.join(' '), `seed 7: ${other.join(' ')}`)
  t.ok(new Set(one).size > 1, 'the picks are spread')
})

t.test('seed: a fault\'s toxicity rolls the same way for the same seed', async (t) => {
  const [a] = await backends(t, 1)
  const run = async (seed: number, clusterIP: string): Promise<string> => {
    const p = testProxy(t, { seed })
    await p.apply(svcWithEndpoints('web', clusterIP, 80, [a!]))
    p.faults.add({ service: 'default/web' }, { type: 'latency', toxicity: 0.5, attributes: { latency: 1, jitter: 1 } })
    const hit: number[] = []
    p.on('fault', (e) => hit.push(e.id))
    const got = await picks(p, 24)
    t.ok(got.every((g) => g === a!.name))
    return hit.join(',')
  }
  const one = await run(3, '127.96.41.4')
  t.equal(await run(3, '127.96.41.5'), one, `seed 3: connections ${one} got the toxic`)
  t.not(await run(4, '127.96.41.6'), one, 'seed 4: others')
  t.ok(one.split(',').length > 2 && one.split(',').length < 22, 'about half')
})

// ------------------------------------------------------------------------------ explain

t.test('explain: round-robin next pick, and it moves nothing', async (t) => {
  const [a, b] = await backends(t, 2)
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('web', '127.96.42.1', 80, [a!, b!]))
  const x1 = p.explain('default/web', { port: 80 })
  const x2 = p.explain('web', { port: '80' })
  t.equal(x1.endpoint, `127.0.0.1:${a!.port}`)
  t.same(x2, x1, 'explain twice: the same answer (the cursor did not move)')
  t.match(x1.reason, /round-robin: next in turn \(1 of 2\)/)
  t.same(x1.endpoints.map((v) => [v.eligible, v.next]), [[true, true], [true, false]])
  t.same(await picks(p, 1), [a!.name], 'the connection got what explain said')
  t.equal(p.explain('default/web', { port: 80 }).endpoint, `127.0.0.1:${b!.port}`)
  t.throws(() => p.explain('default/nope', { port: 80 }), { code: 'SVCPROXY_NOT_FOUND' })
  t.throws(() => p.explain('default/web', { port: 81 }), { code: 'SVCPROXY_NOT_FOUND' })
  t.throws(() => p.explain('default/web', { port: 80, kind: 'healthCheck' as 'nodePort' }), { code: 'SVCPROXY_CONFIG', message: /kind: expected one of clusterIP, externalIP, loadBalancer, nodePort/ })
  t.throws(() => p.explain('default/web', { port: 80, clientIP: 'me' }), { code: 'SVCPROXY_CONFIG', message: /clientIP: expected an IP address/ })
})

t.test('explain foresees seeded random picks', async (t) => {
  const eps = await backends(t, 3)
  const p = testProxy(t, { seed: 1234, loadBalancer: 'random' })
  await p.apply(svcWithEndpoints('web', '127.96.42.2', 80, eps))
  const byKey = new Map(eps.map((e) => [`127.0.0.1:${e.port}`, e.name]))
  for (let i = 0; i < 6; i++) {
    const x = p.explain('default/web', { port: 80 })
    t.equal((await picks(p, 1))[0], byKey.get(x.endpoint ?? ''), `pick ${i}: ${x.reason}`)
  }
  const unseeded = testProxy(t, { loadBalancer: 'random' })
  await unseeded.apply(svcWithEndpoints('web', '127.96.42.3', 80, eps))
  const u = unseeded.explain('default/web', { port: 80 })
  t.equal(u.endpoint, null)
  t.match(u.reason, /random draw among the 3 eligible endpoints/)
})

t.test('explain: not ready, terminating, other node under policy Local, self-loop', async (t) => {
  const p = testProxy(t, { hostname: 'node-a' })
  await p.apply([
    svc('web', '127.96.42.4', { ports: [{ port: 80, targetPort: 8080 }] }),
    slice('web', 'web-1', { ip: '127.0.43.1' }, 8080),
    slice('web', 'web-2', { ip: '127.0.43.2', ready: false, serving: true, terminating: true }, 8080),
    slice('web', 'web-3', { ip: '127.0.43.3', ready: false }, 8080),
    slice('web', 'web-4', { ip: '127.0.43.4', nodeName: 'node-b' }, 8080),
  ])
  const x = p.explain('default/web', { port: 80 })
  const why = Object.fromEntries(x.endpoints.map((v) => [v.endpoint, v]))
  t.equal(x.endpoint, '127.0.43.1:8080')
  t.equal(why['127.0.43.4:8080']?.eligible, true, 'another node is fine without policy Local')
  t.match(why['127.0.43.2:8080']?.reasons.join(), /terminating: serving-and-terminating endpoints take connections only when no endpoint is ready/)
  t.match(why['127.0.43.3:8080']?.reasons.join(), /not ready \(EndpointSlice web-3: conditions.ready false\)/)
  t.equal(why['127.0.43.3:8080']?.eligible, false)

  await p.apply([svc('web', '127.96.42.4', { ports: [{ port: 80, targetPort: 8080 }], internalTrafficPolicy: 'Local' })])
  const l = p.explain('default/web', { port: 80 })
  const lw = Object.fromEntries(l.endpoints.map((v) => [v.endpoint, v]))
  t.match(lw['127.0.43.4:8080']?.reasons.join(), /on node "node-b", not this node \("node-a"\): internalTrafficPolicy Local/)
  t.equal(lw['127.0.43.4:8080']?.eligible, false)
  t.equal(l.endpoint, '127.0.43.1:8080')

  // Only terminating ones left on this node: the fallback takes them, and explain says so.
  await p.delete('EndpointSlice default/web-1')
  const f = p.explain('default/web', { port: 80 })
  t.equal(f.endpoint, '127.0.43.2:8080')
  t.match(f.endpoints.find((v) => v.endpoint === '127.0.43.2:8080')?.reasons.join(), /terminating, used as the fallback/)

  // An endpoint at the service's own address:port, applied apart from the Service.
  await p.apply([svc('loop', '127.96.42.5')])
  await p.apply([{ apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'loop', namespace: 'default' }, subsets: [{ addresses: [{ ip: '127.96.42.5' }, { ip: '127.0.43.9' }], ports: [{ port: 80 }] }] }])
  const s = p.explain('default/loop', { port: 80 })
  t.match(s.endpoints.find((v) => v.endpoint === '127.96.42.5:80')?.reasons.join(), /self-loop: it is this service's own clusterIP address/)
  t.equal(s.endpoint, '127.0.43.9:80')
})

t.test('explain: Endpoints notReadyAddresses, loadBalancerSourceRanges, ClientIP affinity', async (t) => {
  const [a, b] = await backends(t, 2)
  const p = testProxy(t, { nodePortAddresses: ['127.0.0.1/32'] })
  await p.apply([
    svc('web', '127.96.42.6', { sessionAffinity: 'ClientIP' }),
    { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'web', namespace: 'default' }, subsets: [{ addresses: [{ ip: '127.0.0.1' }], ports: [{ port: a!.port }] }, { addresses: [{ ip: '127.0.0.1' }], ports: [{ port: b!.port }] }, { addresses: [], notReadyAddresses: [{ ip: '127.0.44.1' }], ports: [{ port: 9 }] }] },
  ])
  const x = p.explain('default/web', { port: 80, clientIP: '127.0.0.1' })
  t.match(x.endpoints.find((v) => v.endpoint === '127.0.44.1:9')?.reasons.join(), /not ready \(Endpoints notReadyAddresses\)/)
  const first = (await picks(p, 1))[0]
  const pinned = p.explain('default/web', { port: 80, clientIP: '127.0.0.1' })
  t.equal(pinned.endpoint, `127.0.0.1:${first === a!.name ? a!.port : b!.port}`)
  t.match(pinned.reason, /ClientIP affinity: 127\.0\.0\.1 is pinned to/)
  const other = pinned.endpoints.find((v) => v.endpoint !== pinned.endpoint && v.endpoint.startsWith('127.0.0.1'))
  t.match(other?.reasons.join(), /127\.0\.0\.1 is pinned to .* by ClientIP affinity/)
  t.equal(other?.eligible, false)
  t.same(await picks(p, 2), [first, first], 'the pin held, as explain said')
  t.match(p.explain('default/web', { port: 80, clientIP: '127.0.0.2' }).reason, /ClientIP affinity: 127\.0\.0\.2 has no pin yet, this pick becomes it/, 'another client is not pinned')

  await p.apply([svc('lb', '127.96.42.7', { type: 'LoadBalancer', loadBalancerSourceRanges: ['10.0.0.0/8'] }, { status: { loadBalancer: { ingress: [{ ip: '127.0.44.10' }] } } }),
    ...svcWithEndpoints('lb', '127.96.42.7', 80, [a!]).slice(1)])
  const refused = p.explain('default/lb', { port: 80, kind: 'loadBalancer', clientIP: '127.0.0.1' })
  t.equal(refused.endpoint, null)
  t.match(refused.reason, /client 127\.0\.0\.1 is outside loadBalancerSourceRanges \(10\.0\.0\.0\/8\)/)
  t.equal(p.explain('default/lb', { port: 80, kind: 'loadBalancer', clientIP: '10.1.2.3' }).endpoint, `127.0.0.1:${a!.port}`)
  t.equal(p.explain('default/lb', { port: 80, clientIP: '127.0.0.1' }).endpoint, `127.0.0.1:${a!.port}`, 'the clusterIP has no source ranges')
})

t.test('explain: a down fault and an ejected endpoint', async (t) => {
  const [a, b] = await backends(t, 2)
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('web', '127.96.42.8', 80, [a!, b!]))
  const ka = `127.0.0.1:${a!.port}`
  const kb = `127.0.0.1:${b!.port}`
  p.faults.add({ service: 'default/web', endpoint: ka }, { name: 'dead', type: 'down', attributes: { mode: 'refuse' } })
  const x = p.explain('default/web', { port: 80 })
  t.equal(x.endpoint, ka)
  t.match(x.reason, /but it is down \(fault "dead", refuse\): that dial fails and the connection moves on/)
  t.match(x.endpoints.find((v) => v.endpoint === ka)?.reasons.join(), /down \(fault "dead"/)
  // Outlier detection's mark on the endpoint (health.ts sets it after failed dials).
  const rt = p.dataplane.runtimes.get('default/web:80')
  const bb = rt?.byKey.get(kb)
  t.ok(bb !== undefined)
  if (rt !== undefined && bb !== undefined) {
    bb.ejected = true
    bb.ejectedUntil = Date.now() + 30_000
    rt.refilter()
    t.match(p.explain('default/web', { port: 80 }).endpoints.find((v) => v.endpoint === kb)?.reasons.join(), /ejected by outlier detection until 20/)
    bb.ejected = false
    bb.check = 'down'
    rt.refilter()
    const c = p.explain('default/web', { port: 80 }).endpoints.find((v) => v.endpoint === kb)
    t.match(c?.reasons.join(), /health check failing/)
    t.equal(c?.eligible, false)
  }
})

// ------------------------------------------------------------------------------ many proxies

/** Handles and requests the process holds, by type (timers left out: tap's own come and go). */
function handles (): Record<string, number> {
  const out: Record<string, number> = {}
  for (const r of process.getActiveResourcesInfo()) if (r !== 'Timeout' && r !== 'Immediate') out[r] = (out[r] ?? 0) + 1
  return out
}

t.test('50 proxies in one process, all on port 0, never collide; closed, they leave nothing open', async (t) => {
  const eps = await backends(t, 2)
  // Earlier tests' servers close in the background: start from a settled count.
  let before = handles()
  await until(async () => { await new Promise((resolve) => setTimeout(resolve, 20)); const now = handles(); const same = JSON.stringify(now) === JSON.stringify(before); before = now; return same })
  const proxies: ServiceProxy[] = []
  for (let i = 0; i < 50; i++) {
    const p = testProxy(t, { seed: i })
    // The same service, the same clusterIP and port in every proxy: port 0 keeps them apart.
    await p.apply(svcWithEndpoints('web', '127.96.45.1', 80, eps))
    proxies.push(p)
  }
  const ports = new Set(proxies.map((p) => p.address('default/web', 80).port))
  t.equal(ports.size, 50, '50 distinct ports')
  const got = await Promise.all(proxies.map(async (p) => (await picks(p, 1))[0]))
  t.ok(got.every((g) => g === eps[0]!.name), `each proxy served its own first pick: ${got.join(' ')}`)
  // One connection left open in each, and a fault holding data in half of them.
  const open = await Promise.all(proxies.map(async (p, i) => {
    const a = p.address('default/web', 80)
    if (i % 2 === 0) p.faults.add({ service: 'default/web' }, { type: 'latency', stream: 'downstream', attributes: { latency: 60_000 } })
    const s = connect(a.port, a.address)
    s.on('error', () => {})
    await new Promise((resolve) => s.once('connect', resolve))
    return s
  }))
  await Promise.all(proxies.map(async (p) => { await p.close() }))
  t.ok(proxies.every((p) => p.dataplane.openCount() === 0 && [...p.dataplane.frontends.values()].every((fe) => fe.isClosed())), 'close() resolved with every listener and connection closed')
  for (const s of open) s.destroy()
  // The clients' and the backends' own sockets close as the FIN/RST reaches them.
  const back = await until(() => JSON.stringify(handles()) === JSON.stringify(before))
  t.ok(back, `the handles are back to what they were before the 50 proxies: ${JSON.stringify(handles())} vs ${JSON.stringify(before)}`)
})

t.test('bench/harness.ts runs end to end and finds nothing left open (tiny counts; timing is the bench\'s, not asserted)', async (t) => {
  const child = spawn(process.execPath, [...process.execArgv, 'bench/harness.ts', '--runs', '5', '--alive', '5', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  const [code] = await once(child, 'exit') as [number | null]
  t.equal(code, 0, 'exits 0', { stderr })
  const f = JSON.parse(stdout) as { runs: number, totalP50Ms: number, alive: { proxies: number, withFault: boolean, leftOpen: number, undestroyed: Record<string, number> } }
  t.equal(f.runs, 5)
  t.ok(Number.isFinite(f.totalP50Ms) && f.totalP50Ms > 0, `per proxy p50 ${f.totalP50Ms} ms`)
  t.equal(f.alive.proxies, 5)
  t.equal(f.alive.withFault, true, 'each proxy had its fault')
  t.equal(f.alive.leftOpen, 0)
  t.same(f.alive.undestroyed, {})
})

t.test('close() leaves nothing behind while faults hold data: TCP and UDP, unref\'d timers included (async_hooks)', async (t) => {
  const [a] = await backends(t, 1)
  const u = await udpServer(t, 'u')
  const c = await udpClient(t)
  const live = new Map<number, string>()
  const tracked = new Set(['TCPWRAP', 'TCPSERVERWRAP', 'UDPWRAP', 'Timeout', 'TCPCONNECTWRAP'])
  const hook = createHook({
    init (id, type) { if (tracked.has(type)) live.set(id, type) },
    destroy (id) { live.delete(id) },
  }).enable()
  t.teardown(() => { hook.disable() })
  const p = testProxy(t, { udpTimeoutMs: 60_000 })
  await p.apply([...svcWithEndpoints('web', '127.96.46.1', 80, [a!]), ...svcWithEndpoints('dns', '127.96.46.2', 53, [{ ip: '127.0.0.1', port: u.port }], { protocol: 'UDP' })])
  p.faults.add({ service: 'default/web' }, { type: 'latency', stream: 'downstream', attributes: { latency: 60_000 } })
  p.faults.add({ service: 'default/dns' }, { type: 'latency', stream: 'downstream', attributes: { latency: 60_000 } })
  const web = p.address('default/web', 80)
  const dns = p.address('default/dns', 53)
  const held = p.waitFor('fault', (e) => e.protocol === 'TCP')
  const heldUdp = p.waitFor('sessionOpen')
  const s = connect(web.port, web.address)
  s.on('error', () => {})
  await once(s, 'connect')
  c.send('q', dns.port, dns.address)
  await held
  await heldUdp
  t.ok(await until(() => u.received() === 1), 'the datagram reached the endpoint; its reply is held')
  const ours = [...live.values()]
  t.ok(ours.length > 0, `followed while held: ${ours.join(', ')}`)
  await p.close()
  s.destroy()
  const gone = await until(() => live.size === 0)
  t.ok(gone, `nothing left undestroyed after close: ${[...live.values()].join(', ') || 'none'}`)
})
