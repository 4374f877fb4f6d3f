import { once } from 'node:events'
import { request } from 'node:http'
import { connect, createServer, type Socket } from 'node:net'
import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import { AdminListenError, createAdminServer, type SourceHealth } from '../lib/index.js'
import { Exposition, labels } from '../lib/admin/metrics.js'
import { parseBindAddress } from '../lib/admin/server.js'
import { renderStatus } from '../lib/cli/status.js'
import { Histogram } from '../lib/util/histogram.js'
import { parseExposition, valueOf } from './exposition.js'
import { echoServer, listen, svcWithEndpoints, testProxy, until } from './helpers.js'

interface Res { status: number, type: string, body: string }

function get (url: string): Promise<Res> {
  return new Promise((resolve, reject) => {
    request(url, { agent: false }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }))
    }).on('error', reject).end()
  })
}

/** An open client connection whose echo of `hello` has come back (so it is established end to end). */
async function openEcho (host: string, port: number): Promise<Socket> {
  const s = connect({ host, port })
  s.write('hello')
  await once(s, 'data')
  return s
}

/** Sends `payload`, half-closes, and reads until the peer closes. */
async function roundTrip (host: string, port: number, payload: Buffer): Promise<Buffer> {
  const s = connect({ host, port })
  const chunks: Buffer[] = []
  s.on('data', (c: Buffer) => chunks.push(c))
  s.end(payload)
  await once(s, 'close')
  return Buffer.concat(chunks)
}

const SP = { namespace: 'default', service: 'm', port: '80' }

t.test('/metrics: valid exposition format, counters follow real traffic', async (t) => {
  const echo = await echoServer(t, '127.0.6.1')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('m', '127.51.0.1', 80, [{ ip: '127.0.6.1', port: echo.port }]))
  const admin = await createAdminServer({ proxy: p, metricsBindAddress: '127.0.0.1:0' })
  t.teardown(() => admin.close())
  const scrape = async (): Promise<ReturnType<typeof parseExposition>> => {
    const r = await get(`${admin.metricsUrl ?? ''}/metrics`)
    t.equal(r.status, 200)
    t.match(r.type, /^text\/plain; version=0\.0\.4/)
    return parseExposition(r.body) // throws on anything Prometheus would reject
  }
  const ep = { ...SP, endpoint: `127.0.6.1:${echo.port}` }

  const before = await scrape()
  t.equal(valueOf(before, 'svcproxy_connections_accepted_total', SP), 0)
  t.equal(valueOf(before, 'svcproxy_endpoints', { ...SP, ready: 'true' }), 1)
  t.equal(valueOf(before, 'svcproxy_table_revision'), p.table.revision)
  t.equal(valueOf(before, 'svcproxy_sync_duration_seconds_count'), 1, 'the apply was timed')
  t.ok((valueOf(before, 'svcproxy_last_sync_timestamp_seconds') ?? 0) > 0)
  t.ok((valueOf(before, 'svcproxy_heap_used_bytes') ?? 0) > 0)
  if (process.platform === 'linux') t.ok((valueOf(before, 'svcproxy_open_fds') ?? 0) > 0)
  t.equal(before.types.get('svcproxy_sync_duration_seconds'), 'histogram')
  // Prometheus's standard process family names, beside svcproxy's own.
  t.ok((valueOf(before, 'process_cpu_seconds_total') ?? 0) > 0)
  t.ok((valueOf(before, 'process_resident_memory_bytes') ?? 0) > 0)
  t.ok(Math.abs((valueOf(before, 'process_start_time_seconds') ?? 0) - (Date.now() - performance.now()) / 1000) < 1, 'the process start')
  if (process.platform === 'linux') {
    t.ok((valueOf(before, 'process_virtual_memory_bytes') ?? 0) >= (valueOf(before, 'process_resident_memory_bytes') ?? 0))
    t.ok((valueOf(before, 'process_open_fds') ?? 0) > 0)
    t.ok((valueOf(before, 'process_max_fds') ?? 0) >= (valueOf(before, 'process_open_fds') ?? 0))
  }
  t.equal(valueOf(before, 'svcproxy_connection_duration_seconds_count', SP), undefined, 'no duration series before a connection')

  const addr = p.address('default/m', 80)
  const held = await openEcho(addr.address, addr.port)
  const during = await scrape()
  t.equal(valueOf(during, 'svcproxy_connections_active', SP), 1, 'an open connection is active')
  t.equal(valueOf(during, 'svcproxy_endpoint_connections_active', ep), 1)
  held.end()
  await once(held, 'close')

  const payload = Buffer.alloc(100_000, 7)
  t.equal((await roundTrip(addr.address, addr.port, payload)).length, payload.length)
  await until(() => p.status()[0]?.active === 0)
  const after = await scrape()
  t.equal(valueOf(after, 'svcproxy_connections_accepted_total', SP), 2)
  t.equal(valueOf(after, 'svcproxy_connections_active', SP), 0)
  t.equal(valueOf(after, 'svcproxy_endpoint_connections_total', ep), 2)
  const sent = payload.length + 'hello'.length
  t.equal(valueOf(after, 'svcproxy_bytes_total', { ...SP, direction: 'upstream' }), sent)
  t.equal(valueOf(after, 'svcproxy_bytes_total', { ...SP, direction: 'downstream' }), sent)
  t.equal(valueOf(after, 'svcproxy_endpoint_bytes_total', { ...ep, direction: 'upstream' }), sent)
  t.equal(valueOf(after, 'svcproxy_dial_duration_seconds_count', SP), 2, 'one dial observation per connection')
  t.equal(valueOf(after, 'svcproxy_connection_duration_seconds_count', SP), 2, 'one duration observation per connection, not per chunk (100 KB went through)')
  t.equal(valueOf(after, 'svcproxy_connection_duration_seconds_bucket', { ...SP, le: '+Inf' }), 2)

  // A refusing endpoint: four attempts, three retries, one reset client.
  const dead = createServer()
  const deadPort = await listen(dead, '127.0.6.2')
  dead.close()
  await p.apply(svcWithEndpoints('m', '127.51.0.1', 80, [{ ip: '127.0.6.2', port: deadPort }]))
  await roundTrip(addr.address, addr.port, Buffer.from('x')).catch(() => Buffer.alloc(0))
  await until(() => p.status()[0]?.active === 0)
  const failed = await scrape()
  t.equal(valueOf(failed, 'svcproxy_dial_failures_total', SP), 4)
  t.equal(valueOf(failed, 'svcproxy_dial_retries_total', SP), 3)
  t.equal(valueOf(failed, 'svcproxy_endpoint_dial_failures_total', { ...SP, endpoint: `127.0.6.2:${deadPort}` }), 4)
  t.equal(valueOf(failed, 'svcproxy_sync_duration_seconds_count'), 2)
  t.equal(valueOf(failed, 'svcproxy_endpoint_connections_total', ep), undefined, 'a removed endpoint leaves the scrape')

  await t.rejects(p.apply({ kind: 'Service' }))
  t.equal(valueOf(await scrape(), 'svcproxy_sync_errors_total'), 1, 'a rejected write is a sync error')
})

t.test('/healthz answers like kube-proxy and flips to 503 when the source is stale', async (t) => {
  const p = testProxy(t)
  const h: SourceHealth = { kind: 'test', synced: false, stale: false, reason: '', lastSyncedAt: 0, revision: 0 }
  const admin = await createAdminServer({ proxy: p, health: () => h, healthzBindAddress: '127.0.0.1:0' })
  t.teardown(() => admin.close())
  t.equal(admin.metricsUrl, null, 'metrics disabled with no address')
  const base = admin.healthzUrl ?? ''

  let r = await get(`${base}/healthz`)
  t.equal(r.status, 200, 'starting up is healthy (kube-proxy)')
  t.same(JSON.parse(r.body), { lastUpdated: '0001-01-01T00:00:00Z', currentTime: JSON.parse(r.body).currentTime })
  t.equal((await get(`${base}/readyz`)).status, 503, 'not ready before the first sync')
  t.equal((await get(`${base}/livez`)).status, 200)

  h.synced = true
  h.lastSyncedAt = Date.UTC(2026, 0, 2, 3, 4, 5, 600)
  r = await get(`${base}/healthz`)
  t.equal(r.status, 200)
  const body = JSON.parse(r.body) as { lastUpdated: string, currentTime: string }
  t.equal(body.lastUpdated, '2026-01-02T03:04:05.600Z')
  t.ok(Math.abs(Date.parse(body.currentTime) - Date.now()) < 60_000, 'currentTime is now (RFC 3339)')
  t.equal((await get(`${base}/readyz`)).status, 200)

  h.stale = true
  h.reason = 'store unreachable'
  r = await get(`${base}/healthz`)
  t.equal(r.status, 503, 'stale source: unhealthy')
  t.equal(JSON.parse(r.body).lastUpdated, '2026-01-02T03:04:05.600Z')

  h.stale = false
  t.equal((await get(`${base}/healthz`)).status, 200, 'recovers')
  admin.shuttingDown()
  t.equal((await get(`${base}/readyz`)).status, 503, 'not ready once shutdown began')
  t.equal((await get(`${base}/metrics`)).status, 404, 'the health server does not expose metrics')
})

t.test('one server when both addresses are equal; a taken port is a clear error', async (t) => {
  const p = testProxy(t)
  const blocker = createServer()
  const port = await listen(blocker, '127.0.0.1')
  t.teardown(() => blocker.close())
  const err = await createAdminServer({ proxy: p, metricsBindAddress: `127.0.0.1:${port}` }).catch((e: unknown) => e)
  t.ok(err instanceof AdminListenError)
  t.equal((err as AdminListenError).code, 'SVCPROXY_LISTEN')
  t.match((err as Error).message, /^metrics: cannot listen on 127\.0\.0\.1:\d+ \(--metrics-bind-address\): address already in use \(EADDRINUSE\)$/)

  blocker.close()
  await once(blocker, 'close')
  const admin = await createAdminServer({ proxy: p, metricsBindAddress: `127.0.0.1:${port}`, healthzBindAddress: `127.0.0.1:${port}` })
  t.teardown(() => admin.close())
  t.equal(admin.healthzUrl, admin.metricsUrl)
  t.equal((await get(`http://127.0.0.1:${port}/healthz`)).status, 200)
  t.equal((await get(`http://127.0.0.1:${port}/metrics`)).status, 200)
  t.equal((await get(`http://127.0.0.1:${port}/proxyMode`)).body, 'userspace')
})

t.test('/v1/services and /v1/endpoints show live state; status renders it', async (t) => {
  const echo = await echoServer(t, '127.0.6.3')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('m', '127.51.0.3', 80, [{ ip: '127.0.6.3', port: echo.port }]))
  const admin = await createAdminServer({ proxy: p, metricsBindAddress: '127.0.0.1:0' })
  t.teardown(() => admin.close())
  const addr = p.address('default/m', 80)
  const held = await openEcho(addr.address, addr.port)
  t.teardown(() => held.destroy())

  const svc = JSON.parse((await get(`${admin.metricsUrl ?? ''}/v1/services`)).body) as { revision: number, services: Array<{ id: string, active: number, frontends: Array<{ boundPort: number }> }> }
  t.equal(svc.revision, p.table.revision)
  t.equal(svc.services[0]?.id, 'default/m:80')
  t.equal(svc.services[0]?.active, 1)
  t.equal(svc.services[0]?.frontends[0]?.boundPort, addr.port)
  const eps = JSON.parse((await get(`${admin.metricsUrl ?? ''}/v1/endpoints`)).body) as { endpoints: Array<Record<string, unknown>> }
  t.match(eps.endpoints, [{ namespace: 'default', service: 'm', port: '80', endpoint: `127.0.6.3:${echo.port}`, active: 1, accepted: 1, affinityHits: 0 }])

  const lines = renderStatus({ revision: svc.revision, services: p.status() })
  t.match(lines[0], /1 service port, 1 active connection$/)
  t.match(lines[2], /^NAMESPACE\s+NAME\s+PORT\s+PROTOCOL\s+TYPE\s+ADDRESSES\s+ENDPOINTS\s+ACTIVE/)
  t.match(lines[3], new RegExp(`^default\\s+m\\s+80\\s+TCP\\s+ClusterIP\\s+127\\.51\\.0\\.3:${addr.port}\\s+1/1\\s+1\\s+1\\s+0$`))
  t.match(lines[6], new RegExp(`^default/m\\s+80\\s+127\\.0\\.6\\.3:${echo.port}\\s+<none>\\s+true\\s+ok\\s+1\\s+1\\s+0$`))
})

t.test('access log: one line per connection at its end, with exact byte counts', async (t) => {
  const echo = await echoServer(t, '127.0.6.4')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('m', '127.51.0.4', 80, [{ ip: '127.0.6.4', port: echo.port }]))
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); cb() } })
  // warn: the access log is pinned to info so it still appears.
  const admin = await createAdminServer({ proxy: p, accessLog: true, logger: pino({ level: 'warn' }, sink) })
  t.teardown(() => admin.close())
  const addr = p.address('default/m', 80)
  const s = connect({ host: addr.address, port: addr.port })
  await once(s, 'connect')
  const clientPort = s.localPort ?? -1
  let got = 0
  s.on('data', (c: Buffer) => { got += c.length })
  // Many chunks, one line: nothing is logged per chunk.
  for (let i = 0; i < 50; i++) s.write(Buffer.alloc(1000 + i, 1))
  await until(() => got === 50 * 1000 + (49 * 50) / 2)
  t.equal(lines.length, 0, 'nothing logged while the connection is open')
  s.end()
  await once(s, 'close')
  await until(() => lines.length > 0)
  t.equal(lines.length, 1)
  const sent = 50 * 1000 + (49 * 50) / 2
  t.match(lines[0], { log: 'access', msg: 'connection closed', service: 'default/m', port: '80', protocol: 'TCP', endpoint: `127.0.6.4:${echo.port}`, client: `127.0.0.1:${clientPort}`, bytesIn: sent, bytesOut: sent, reason: 'eof' })
  t.type(lines[0]?.durationMs, 'number')
})

t.test('exposition writer: escaping, histogram buckets, naming rules', async (t) => {
  t.equal(labels({ a: 'x"y\\z\nw' }), 'a="x\\"y\\\\z\\nw"')
  const h = new Histogram([0.1, 1])
  for (const v of [0.05, 0.1, 0.5, 3]) h.observe(v)
  const text = new Exposition().family('x_seconds', 'histogram', 'Help with \\ and\nnewline.').histogram('k="v"', h).family('y_total', 'counter', 'c').sample('', 2).text()
  t.equal(text, [
    '# HELP x_seconds Help with \\\\ and\\nnewline.',
    '# TYPE x_seconds histogram',
    'x_seconds_bucket{k="v",le="0.1"} 2',
    'x_seconds_bucket{k="v",le="1"} 3',
    'x_seconds_bucket{k="v",le="+Inf"} 4',
    'x_seconds_sum{k="v"} 3.65',
    'x_seconds_count{k="v"} 4',
    '# HELP y_total c',
    '# TYPE y_total counter',
    'y_total 2',
    '',
  ].join('\n'))
  t.throws(() => new Exposition().family('a', 'counter', ''), /must end in _total/)
  t.throws(() => new Exposition().family('a', 'gauge', '').family('a', 'gauge', ''), /declared twice/)
  t.throws(() => new Exposition().family('a-b', 'gauge', ''), /bad metric name/)
  t.throws(() => parseExposition('# TYPE a gauge\nb 1\n'), /before TYPE/, 'the test reader rejects what Prometheus would')
})

t.test('bind addresses', async (t) => {
  t.same(parseBindAddress('127.0.0.1:10256', 'f'), { host: '127.0.0.1', port: 10256 })
  t.same(parseBindAddress('[::1]:0', 'f'), { host: '::1', port: 0 })
  t.same(parseBindAddress(':9000', 'f'), { host: '0.0.0.0', port: 9000 })
  t.equal(parseBindAddress('', 'f'), null, '"" disables')
  t.throws(() => parseBindAddress('10256', '--healthz-bind-address'), { code: 'SVCPROXY_CONFIG', message: /--healthz-bind-address: expected IP:PORT/ })
  t.throws(() => parseBindAddress('1.2.3.4:70000', 'f'), { code: 'SVCPROXY_CONFIG' })
})
