// Outlier ejection (issue 14 part 2): an endpoint whose dials fail N times in a row gets no new
// connections for the base ejection time (× times ejected), returns on probation, never more
// than the max share of a port's endpoints is out, and affinity pins to it are dropped.
import t from 'tap'
import { connect } from 'node:net'
import type { DialFailedEvent, EndpointEvent, ServiceProxy } from '../lib/index.js'
import type { EndpointHealthEvent } from '../lib/frontend/events.js'
import type { ServicePortRuntime } from '../lib/frontend/runtime.js'
import { renderMetrics } from '../lib/admin/collect.js'
import { ProcessStats } from '../lib/admin/process-stats.js'
import { renderStatus } from '../lib/cli/status.js'
import { captureLogger, fetchAll, freePort, nameServer, runCli, svcWithEndpoints, testProxy, udpClient, udpClosedPort, udpServer, until } from './helpers.js'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

function runtime (p: ServiceProxy, name: string): ServicePortRuntime {
  for (const rt of p.dataplane.runtimes.values()) if (rt.service === name) return rt
  throw new Error(`no runtime for ${name}`)
}

const fast = (failures: string, base = '200ms', extra: Record<string, string> = {}): Record<string, string> => ({
  'svcproxy.io/outlier-consecutive-failures': failures,
  'svcproxy.io/outlier-base-ejection-time': base,
  ...extra,
})

/** One connection from `localAddress`; resolves with what the endpoint sent, or ERR:code. */
function fetchFrom (host: string, port: number, localAddress: string): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const s = connect({ host, port, localAddress })
    s.on('data', (c) => chunks.push(c))
    s.on('error', (e: NodeJS.ErrnoException) => resolve(`ERR:${e.code ?? e.message}`))
    s.on('close', () => { if (!s.errored) resolve(Buffer.concat(chunks).toString()) })
  })
}

t.test('a refusing endpoint is ejected after N failures in a row, gets no connection, returns after the base time on probation', async (t) => {
  const a = await nameServer(t, 'a', '127.0.140.1')
  const b = await nameServer(t, 'b', '127.0.140.2')
  const deadPort = await freePort('127.0.140.3')
  const dead = `127.0.140.3:${deadPort}`
  const { logger, lines } = captureLogger('info')
  const p = testProxy(t, { logger })
  const health: EndpointHealthEvent[] = []
  const failed: DialFailedEvent[] = []
  const order: string[] = [] // both kinds of event, in the order they came
  p.on('endpointHealth', (e) => { health.push(e); order.push(`${e.change} ${e.endpoint}`) })
  p.on('dialFailed', (e) => { failed.push(e); order.push(`failed ${e.endpoint}`) })
  await p.apply(svcWithEndpoints('outl', '127.96.140.1', 80, [
    { ip: '127.0.140.1', port: a.port }, { ip: '127.0.140.2', port: b.port }, { ip: '127.0.140.3', port: deadPort },
  ], { annotations: fast('3', '1s') }))
  const addr = p.address('default/outl', 80)
  const rt = runtime(p, 'outl')
  // Sequential connections until the third failure on the dead endpoint ejects it; each still gets an answer.
  for (let i = 0; i < 30 && !health.some((e) => e.change === 'ejected'); i++) {
    t.match(await fetchAll(addr.address, addr.port), /^[ab]$/, `connection ${i} answered by a live endpoint`)
  }
  const ej = health.find((e) => e.change === 'ejected')
  t.ok(ej !== undefined, 'ejected')
  t.equal(ej?.endpoint, dead)
  t.match(ej?.detail, /^3 dial failures in a row/)
  t.equal(failed.filter((e) => e.endpoint === dead).length, 3, 'after exactly 3 failures')
  t.equal(rt.ejectionsTotal, 1)
  t.same(rt.balancer.endpoints.map((e) => e.key).sort(), [`127.0.140.1:${a.port}`, `127.0.140.2:${b.port}`], 'the balancer no longer has it')
  t.equal(rt.endpoints.length, 3, 'still in the set the status shows')
  const st = p.status().find((s) => s.name === 'outl')?.endpoints.find((e) => e.endpoint === dead)
  t.equal(st?.ejected, true)
  t.equal(st?.eligible, false)
  t.ok(lines.some((l) => l.level === 40 && typeof l.msg === 'string' && l.msg.startsWith('endpoint ejected') && l.endpoint === dead), 'logged at warn, once')
  const proc = new ProcessStats()
  t.teardown(() => proc.close())
  const scrape = await renderMetrics({ proxy: p, health: () => ({ kind: 'api', synced: true, stale: false, reason: '', lastSyncedAt: 0, revision: 1 }), process: proc })
  t.match(scrape, /^svcproxy_endpoint_ejections_total\{namespace="default",service="outl",port="80"\} 1$/m, 'svcproxy_endpoint_ejections_total')
  t.match(scrape, /^svcproxy_endpoints_ejected\{namespace="default",service="outl",port="80"\} 1$/m, 'svcproxy_endpoints_ejected')
  t.match(scrape, /^svcproxy_dial_duration_seconds_count\{namespace="default",service="outl",port="80"\} [1-9]/m, 'dial latency histogram')
  const table = renderStatus({ revision: 1, services: p.status() }).join('\n')
  t.match(table, new RegExp(`${dead.replace(/\./g, '\\.')}\\s+<none>\\s+true\\s+ejected \\(\\d+s left, 1 ejection\\)`), 'svcproxy status shows it')

  const accepted = a.accepted() + b.accepted()
  for (let i = 0; i < 20 && !health.some((e) => e.change === 'returned'); i++) t.match(await fetchAll(addr.address, addr.port), /^[ab]$/)
  t.ok(a.accepted() + b.accepted() > accepted, 'connections while it is out')
  t.ok(await until(() => health.some((e) => e.change === 'returned')), 'returns after the base ejection time')
  const out = order.slice(order.indexOf(`ejected ${dead}`) + 1, order.indexOf(`returned ${dead}`))
  t.same(out.filter((x) => x === `failed ${dead}`), [], 'no dial to the ejected endpoint while it is out')
  t.ok(rt.balancer.endpoints.some((e) => e.key === dead), 'back in the balancer')
  // Probation: its next failed dial ejects it again at once, for twice the base time.
  for (let i = 0; i < 6 && health.filter((e) => e.change === 'ejected').length < 2; i++) await fetchAll(addr.address, addr.port)
  t.equal(health.filter((e) => e.change === 'ejected').length, 2, 'ejected again')
  t.equal(failed.filter((e) => e.endpoint === dead).length, 4, 'after one failure on probation')
  const b2 = rt.byKey.get(dead)
  t.equal(b2?.ejections, 2, 'second ejection')
  t.ok((b2?.ejectedUntil ?? 0) - Date.now() > 1000, 'for longer than the base time (2 × 1s)')
})

t.test('never more than the max share: two dead endpoints, one is ejected, the port is not dark', async (t) => {
  const d1 = await freePort('127.0.141.1')
  const d2 = await freePort('127.0.141.2')
  const p = testProxy(t)
  const health: EndpointHealthEvent[] = []
  p.on('endpointHealth', (e) => health.push(e))
  await p.apply(svcWithEndpoints('both', '127.96.140.2', 80, [{ ip: '127.0.141.1', port: d1 }, { ip: '127.0.141.2', port: d2 }], { annotations: fast('2', '1m') }))
  const addr = p.address('default/both', 80)
  const rt = runtime(p, 'both')
  for (let i = 0; i < 8; i++) t.match(await fetchAll(addr.address, addr.port), /^(ERR:|$)/, 'refused: no endpoint answers')
  t.equal(health.filter((e) => e.change === 'ejected').length, 1, 'one ejection (50% of 2)')
  t.equal(rt.health?.ejectedCount(), 1)
  t.equal(rt.balancer.endpoints.length, 1, 'one endpoint left to try')
  t.ok((rt.endpoints.find((e) => !e.ejected)?.consecutiveFailures ?? 0) > 2, 'the other kept failing, and stays in')
})

t.test('a single endpoint is never ejected; off by annotation, nothing is', async (t) => {
  const d1 = await freePort('127.0.142.1')
  const a = await nameServer(t, 'a', '127.0.142.2')
  const d3 = await freePort('127.0.142.3')
  const p = testProxy(t)
  const health: EndpointHealthEvent[] = []
  p.on('endpointHealth', (e) => health.push(e))
  await p.apply([
    ...svcWithEndpoints('one', '127.96.140.3', 80, [{ ip: '127.0.142.1', port: d1 }], { annotations: fast('1') }),
    ...svcWithEndpoints('off', '127.96.140.4', 80, [{ ip: '127.0.142.2', port: a.port }, { ip: '127.0.142.3', port: d3 }], { annotations: fast('off') }),
  ])
  const one = p.address('default/one', 80)
  const off = p.address('default/off', 80)
  for (let i = 0; i < 4; i++) await fetchAll(one.address, one.port)
  for (let i = 0; i < 10; i++) t.equal(await fetchAll(off.address, off.port), 'a')
  t.same(health, [], 'no ejection')
  t.ok((runtime(p, 'off').byKey.get(`127.0.142.3:${d3}`)?.dialFailures ?? 0) >= 5, 'the dead endpoint kept being dialled')
  t.equal(runtime(p, 'off').ejectAfter, Infinity)
})

t.test('affinity pins to an ejected endpoint are dropped: a pinned client goes elsewhere without a failed dial', async (t) => {
  const a = await nameServer(t, 'a', '127.0.143.1')
  const b = await nameServer(t, 'b', '127.0.143.2')
  const p = testProxy(t)
  const health: EndpointHealthEvent[] = []
  const failed: DialFailedEvent[] = []
  const picked: EndpointEvent[] = []
  p.on('endpointHealth', (e) => health.push(e))
  p.on('dialFailed', (e) => failed.push(e))
  p.on('endpoint', (e) => picked.push(e))
  await p.apply(svcWithEndpoints('sticky', '127.96.140.5', 80, [{ ip: '127.0.143.1', port: a.port }, { ip: '127.0.143.2', port: b.port }], {
    annotations: fast('3', '1m'), spec: { sessionAffinity: 'ClientIP' },
  }))
  const addr = p.address('default/sticky', 80)
  // Ten client addresses, pinned alternately.
  const clients = Array.from({ length: 10 }, (_, i) => `127.0.143.${10 + i}`)
  const pinnedToA: string[] = []
  for (const c of clients) if (await fetchFrom(addr.address, addr.port, c) === 'a') pinnedToA.push(c)
  t.ok(pinnedToA.length >= 5, `${pinnedToA.length} clients pinned to a`)
  a.server.close() // a now refuses
  // Three pinned clients fail on a (each then moves to b): a is ejected.
  for (const c of pinnedToA.slice(0, 3)) t.equal(await fetchFrom(addr.address, addr.port, c), 'b')
  t.ok(await until(() => health.some((e) => e.change === 'ejected')), 'a ejected')
  const failures = failed.length
  picked.length = 0
  for (const c of pinnedToA.slice(3)) t.equal(await fetchFrom(addr.address, addr.port, c), 'b', `${c} goes to b`)
  t.equal(failed.length, failures, 'no dial to a: the pins were dropped')
  t.ok(picked.every((e) => e.attempt === 0), 'first attempt each')
})

t.test('a malformed outlier annotation is refused, naming it, and changes nothing', async (t) => {
  const p = testProxy(t)
  const a = await nameServer(t, 'a', '127.0.144.1')
  await p.apply(svcWithEndpoints('bad', '127.96.140.6', 80, [{ ip: '127.0.144.1', port: a.port }], { annotations: fast('4') }))
  for (const [k, v] of [['svcproxy.io/outlier-consecutive-failures', 'five'], ['svcproxy.io/outlier-base-ejection-time', '30'], ['svcproxy.io/outlier-max-ejection-percent', '120'], ['svcproxy.io/outlier-max-ejection-time', '-1s']]) {
    await t.rejects(p.apply(svcWithEndpoints('bad', '127.96.140.6', 80, [{ ip: '127.0.144.1', port: a.port }], { annotations: { [k as string]: v as string } })), { message: new RegExp(`metadata\\.annotations\\["${(k as string).replace(/\./g, '\\.')}"\\]: expected`) }, `${k}: ${v}`)
  }
  t.equal(runtime(p, 'bad').ejectAfter, 4, 'the last good settings stay')
})

t.test('UDP: an endpoint answering with ICMP port unreachable is ejected too; new sessions then go to the live one', async (t) => {
  const dead = await udpClosedPort('127.0.145.1')
  const good = await udpServer(t, 'good', '127.0.145.2')
  const p = testProxy(t)
  const health: EndpointHealthEvent[] = []
  p.on('endpointHealth', (e) => health.push(e))
  await p.apply(svcWithEndpoints('udpout', '127.96.140.7', 53, [{ ip: '127.0.145.1', port: dead }, { ip: '127.0.145.2', port: good.port }], { protocol: 'UDP', annotations: fast('2', '1m') }))
  const addr = p.address('default/udpout', 53)
  const rt = runtime(p, 'udpout')
  for (let i = 0; i < 12 && !health.some((e) => e.change === 'ejected'); i++) {
    const c = await udpClient(t)
    await c.request(`q${i}`, addr.port, addr.address, 3, 500)
  }
  t.equal(health.find((e) => e.change === 'ejected')?.endpoint, `127.0.145.1:${dead}`, 'the refusing endpoint is ejected')
  const failures = rt.dialFailures
  for (let i = 0; i < 6; i++) {
    const c = await udpClient(t)
    t.equal((await c.request(`r${i}`, addr.port, addr.address))?.data.toString(), `good:r${i}`)
  }
  t.equal(rt.dialFailures, failures, 'no session tried it since')
})

t.test('svcproxy run: a bad --outlier-* value is a usage error naming the flag', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svcproxy-outlier-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'svc.json')
  await writeFile(file, JSON.stringify(svcWithEndpoints('f', '127.96.140.8', 80, [])))
  const admin = ['--metrics-bind-address', '', '--healthz-bind-address', '']
  for (const [flag, value, want] of [
    ['--outlier-base-ejection-time', '0s', /^svcproxy run: --outlier-base-ejection-time: expected a duration from 1ms to 24h, such as 30s, got "0s"$/],
    ['--outlier-max-ejection-percent', '101', /^svcproxy run: --outlier-max-ejection-percent: expected an integer 0-100, got "101"$/],
    ['--outlier-consecutive-failures', 'many', /^svcproxy run: --outlier-consecutive-failures: expected an integer 0-1000, got "many"$/],
  ] as Array<[string, string, RegExp]>) {
    const r = await runCli(['run', '--config', file, flag, value, ...admin])
    t.equal(r.code, 2, `${flag} ${value}: exit 2`)
    t.match(r.stderr.trim(), want)
  }
})
