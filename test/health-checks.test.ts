// Active health checks (issue 14 part 3): opt-in per service (svcproxy.io/health-check: tcp or
// http:/path), interval/timeout/rise/fall; an endpoint takes traffic when Kubernetes says ready
// and its check passes; checks run only for services that ask.
import t from 'tap'
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { createServer } from 'node:net'
import type { EndpointEvent, ServiceProxy } from '../lib/index.js'
import type { EndpointHealthEvent } from '../lib/frontend/events.js'
import type { ServicePortRuntime } from '../lib/frontend/runtime.js'
import { renderMetrics } from '../lib/admin/collect.js'
import { ProcessStats } from '../lib/admin/process-stats.js'
import { fetchAll, freePort, listen, nameServer, svcWithEndpoints, testProxy, until } from './helpers.js'

function runtime (p: ServiceProxy, name: string): ServicePortRuntime {
  for (const rt of p.dataplane.runtimes.values()) if (rt.service === name) return rt
  throw new Error(`no runtime for ${name}`)
}

const checks = (spec: string, extra: Record<string, string> = {}): Record<string, string> => ({
  'svcproxy.io/health-check': spec,
  'svcproxy.io/health-check-interval': '50ms',
  'svcproxy.io/health-check-timeout': '500ms',
  // Outlier ejection off: what keeps traffic away here is the check alone.
  'svcproxy.io/outlier-consecutive-failures': 'off',
  ...extra,
})

/** An HTTP server answering GET /healthz with `status()` and anything else with its name. */
async function httpEndpoint (t: { teardown: (fn: () => unknown) => void }, host: string, name: string, status: () => number): Promise<{ port: number, server: HttpServer, checks: () => number }> {
  let n = 0
  const server = createHttpServer({ keepAlive: false }, (req, res) => {
    if (req.url === '/healthz') { n++; res.writeHead(status()).end('health\n'); return }
    res.writeHead(200, { connection: 'close' }).end(name)
  })
  const port = await listen(server as unknown as import('node:net').Server, host)
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { port, server, checks: () => n }
}

t.test('tcp: an endpoint whose check fails gets no connection though Kubernetes says ready; it joins once the check passes', async (t) => {
  const a = await nameServer(t, 'a', '127.0.150.1')
  const dPort = await freePort('127.0.150.2')
  const dKey = `127.0.150.2:${dPort}`
  const p = testProxy(t)
  const health: EndpointHealthEvent[] = []
  const picked: EndpointEvent[] = []
  let dials = 0
  p.on('endpointHealth', (e) => health.push(e))
  p.on('endpoint', (e) => picked.push(e))
  p.on('dialFailed', () => { dials++ })
  await p.apply(svcWithEndpoints('tcpchk', '127.96.150.1', 80, [{ ip: '127.0.150.1', port: a.port }, { ip: '127.0.150.2', port: dPort }], { annotations: checks('tcp', { 'svcproxy.io/health-check-rise': '2' }) }))
  const addr = p.address('default/tcpchk', 80)
  const rt = runtime(p, 'tcpchk')
  t.ok(await until(() => health.some((e) => e.endpoint === dKey && e.change === 'check-down')), 'the refusing endpoint is check-down')
  t.ok(await until(() => rt.byKey.get(`127.0.150.1:${a.port}`)?.check === 'up'), 'the live one is up')
  t.match(health.find((e) => e.endpoint === dKey)?.detail, /TCP connect failed: ECONNREFUSED/)
  for (let i = 0; i < 20; i++) t.equal(await fetchAll(addr.address, addr.port), 'a', `connection ${i}`)
  t.equal(dials, 0, 'the down endpoint was never dialled')
  const st = p.status().find((s) => s.name === 'tcpchk')?.endpoints.find((e) => e.endpoint === dKey)
  t.same([st?.ready, st?.check, st?.eligible], [true, 'down', false], 'status: ready, check down, not eligible')
  const proc = new ProcessStats()
  t.teardown(() => proc.close())
  const scrape = await renderMetrics({ proxy: p, health: () => ({ kind: 'api', synced: true, stale: false, reason: '', lastSyncedAt: 0, revision: 1 }), process: proc })
  t.match(scrape, /^svcproxy_endpoints_check_down\{namespace="default",service="tcpchk",port="80"\} 1$/m, 'svcproxy_endpoints_check_down')
  t.match(scrape, /^svcproxy_health_checks_total\{namespace="default",service="tcpchk",port="80",result="fail"\} [1-9]/m, 'failed checks counted')
  t.match(scrape, /^svcproxy_health_checks_total\{namespace="default",service="tcpchk",port="80",result="pass"\} [1-9]/m, 'passed checks counted')

  // The endpoint comes to life on the same port: after `rise` passes it takes connections.
  const d = createServer((s) => { s.on('error', () => {}); s.end('d') })
  await listen(d, '127.0.150.2', dPort)
  t.teardown(() => d.close())
  t.ok(await until(() => health.some((e) => e.endpoint === dKey && e.change === 'check-up')), 'check-up')
  t.ok(rt.checksPassed > 0 && rt.checksFailed > 0, 'checks counted both ways')
  const seen = new Set<string>()
  for (let i = 0; i < 6; i++) seen.add(await fetchAll(addr.address, addr.port))
  t.same([...seen].sort(), ['a', 'd'], 'both take connections')
})

t.test('http: 503 is down, 200 brings it up after rise passes, 503 takes it down after fall failures', async (t) => {
  let code = 503
  const h = await httpEndpoint(t, '127.0.151.1', 'h', () => code)
  const a = await httpEndpoint(t, '127.0.151.2', 'a', () => 200)
  const hKey = `127.0.151.1:${h.port}`
  const p = testProxy(t)
  const health: EndpointHealthEvent[] = []
  p.on('endpointHealth', (e) => health.push(e))
  await p.apply(svcWithEndpoints('httpchk', '127.96.150.2', 80, [{ ip: '127.0.151.1', port: h.port }, { ip: '127.0.151.2', port: a.port }], {
    annotations: checks('http:/healthz', { 'svcproxy.io/health-check-rise': '3', 'svcproxy.io/health-check-fall': '2' }),
  }))
  const addr = p.address('default/httpchk', 80)
  const rt = runtime(p, 'httpchk')
  t.ok(await until(() => health.some((e) => e.endpoint === hKey && e.change === 'check-down')), 'down on 503')
  t.match(health.find((e) => e.endpoint === hKey)?.detail, 'HTTP 503 from GET /healthz')
  t.ok(await until(() => rt.byKey.get(`127.0.151.2:${a.port}`)?.check === 'up'), 'a is up')
  const body = async (): Promise<string> => (await fetchAll(addr.address, addr.port, 'GET / HTTP/1.0\r\n\r\n')).split('\r\n\r\n').pop() ?? ''
  for (let i = 0; i < 6; i++) t.equal(await body(), 'a')

  let at = h.checks()
  code = 200
  t.ok(await until(() => rt.byKey.get(hKey)?.check === 'up'), 'up on 200')
  t.ok(h.checks() - at >= 3, `after rise (3) passes: ${h.checks() - at} checks`)
  const ev = health.filter((e) => e.endpoint === hKey)
  t.same(ev.map((e) => e.change), ['check-down', 'check-up'])
  t.equal(ev[1]?.detail, 'HTTP 200 from GET /healthz')
  const bodies = new Set<string>()
  for (let i = 0; i < 6; i++) bodies.add(await body())
  t.same([...bodies].sort(), ['a', 'h'], 'h takes connections again')

  at = h.checks()
  code = 302 // 3xx passes too
  await until(() => h.checks() - at >= 3)
  t.equal(rt.byKey.get(hKey)?.check, 'up', '302 passes')
  at = h.checks()
  code = 500
  t.ok(await until(() => rt.byKey.get(hKey)?.check === 'down'), 'down again')
  t.ok(h.checks() - at >= 2, `after fall (2) failures: ${h.checks() - at} checks`)
  t.notOk(rt.balancer.endpoints.some((b) => b.key === hKey), 'out of the balancer')
})

t.test('checks run only for services that ask, stop when the annotation goes, and fail open when every endpoint fails', async (t) => {
  const plain = await nameServer(t, 'plain', '127.0.152.1')
  const checked = await nameServer(t, 'checked', '127.0.152.2')
  const d1 = await freePort('127.0.152.3')
  const d2 = await freePort('127.0.152.4')
  const p = testProxy(t)
  const ask = svcWithEndpoints('asks', '127.96.150.3', 80, [{ ip: '127.0.152.2', port: checked.port }], { annotations: checks('tcp') })
  await p.apply([
    ...svcWithEndpoints('plain', '127.96.150.4', 80, [{ ip: '127.0.152.1', port: plain.port }]),
    ...ask,
    ...svcWithEndpoints('alldown', '127.96.150.5', 80, [{ ip: '127.0.152.3', port: d1 }, { ip: '127.0.152.4', port: d2 }], { annotations: checks('tcp') }),
  ])
  t.ok(await until(() => checked.accepted() >= 5), 'the service that asks is checked, again and again')
  t.equal(plain.accepted(), 0, 'the other one never is')
  t.equal(runtime(p, 'plain').health?.checker, null)
  t.equal(runtime(p, 'plain').endpoints[0]?.check, 'none')

  const all = runtime(p, 'alldown')
  t.ok(await until(() => all.endpoints.every((b) => b.check === 'down')), 'both down')
  t.equal(all.balancer.endpoints.length, 2, 'kept in rotation: checks alone never make a port dark')
  t.ok(p.status().find((s) => s.name === 'alldown')?.endpoints.every((e) => e.eligible))

  // The annotation goes: checks stop, the endpoint is back to 'none'.
  await p.apply(svcWithEndpoints('asks', '127.96.150.3', 80, [{ ip: '127.0.152.2', port: checked.port }]))
  const rt = runtime(p, 'asks')
  t.equal(rt.health?.checker, null)
  t.equal(rt.endpoints[0]?.check, 'none')
  const n = checked.accepted()
  await p.apply(svcWithEndpoints('marker', '127.96.150.6', 80, [{ ip: '127.0.152.1', port: plain.port }], { annotations: checks('tcp') }))
  t.ok(await until(() => plain.accepted() >= 3), 'another service\'s checks ran meanwhile')
  t.equal(checked.accepted(), n, 'no check since the annotation went')
})

t.test('a malformed check annotation is refused, naming it', async (t) => {
  const p = testProxy(t)
  for (const [k, v] of [['svcproxy.io/health-check', 'udp'], ['svcproxy.io/health-check', 'http:healthz'], ['svcproxy.io/health-check-interval', '1'], ['svcproxy.io/health-check-rise', '0'], ['svcproxy.io/health-check-fall', 'x'], ['svcproxy.io/health-check-timeout', '2 s']]) {
    await t.rejects(p.apply(svcWithEndpoints('bad', '127.96.150.7', 80, [{ ip: '127.0.153.1', port: 80 }], { annotations: { [k as string]: v as string } })),
      { message: new RegExp(`metadata\\.annotations\\["${(k as string).replace(/\./g, '\\.')}"\\]: expected`) }, `${k}: ${v}`)
  }
  t.equal(p.status().length, 0, 'nothing applied')
})
