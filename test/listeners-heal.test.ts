// Issue 18, defects 1 and 9: a listener that failed to bind heals on its own, and nothing about it
// is silent meanwhile: the write reports it (ApplyResult.failed, or BindError under strictBind),
// /readyz answers 503 naming it, svcproxy_frontends_in_error counts it, `status` shows it, the
// log says it once. Two proxies (and two daemons) on one host want the same clusterIP:port
// without ephemeralPorts, as two svcproxy daemons on one node would.

import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import t from 'tap'
import { BindError, createAdminServer, createProxy, type ProxyOptions, RedisStore, type ServiceProxy, watchConfigFile, watchRedis } from '../lib/index.js'
import { BIND_RETRY_MIN_MS } from '../lib/dataplane/dataplane.js'
import { renderStatus } from '../lib/cli/status.js'
import type { ServicesDoc } from '../lib/admin/serialize.js'
import { parseExposition, valueOf } from './exposition.js'
import { cliCommand, echoServer, fetchAll, listen, runCli, svcWithEndpoints, testEngine, until, httpGet, freePort, captureLogger } from './helpers.js'
import { startRedis } from './redis-helpers.js'

type T = { teardown: (fn: () => unknown) => void }

const root = new URL('..', import.meta.url).pathname
/** A proxy binding the ports its objects say (no ephemeralPorts): what a daemon does. */
function fixedPortProxy (t: T, opts: ProxyOptions = {}): ServiceProxy {
  const p = createProxy({ logger: pino({ level: 'silent' }), engine: testEngine(), ...opts })
  t.teardown(() => p.close())
  return p
}

/** What a client of the service gets: the echo of `ping`, or the error code. */
const through = (host: string, port: number): Promise<string> => fetchAll(host, port, 'ping')

const msg = (lines: Array<Record<string, unknown>>, text: string): Array<Record<string, unknown>> => lines.filter((l) => l.msg === text)

t.test('a listener that could not bind heals on its own; /readyz, metrics, status and the write say so meanwhile', async (t) => {
  const ip = '127.118.0.1'
  const port = await freePort(ip)
  const echo = await echoServer(t, '127.0.118.1')
  const web = svcWithEndpoints('web', ip, port, [{ ip: '127.0.118.1', port: echo.port }])

  const first = fixedPortProxy(t)
  const a = await first.apply(web)
  t.same(a.failed, [], 'the first proxy binds')
  t.equal(await through(ip, port), 'ping')

  const { logger, lines } = captureLogger('debug')
  const second = fixedPortProxy(t, { logger })
  const res = await second.apply(web)
  t.equal(res.revision, 1, 'the write is applied')
  t.equal(res.failed.length, 1, 'defect 9: the write reports the listener it could not bind')
  t.match(res.failed[0], { service: 'default/web', port: String(port), protocol: 'TCP', kind: 'clusterIP', address: `${ip}:${port}`, error: /^EADDRINUSE/ })
  t.same(second.listenersInError(), res.failed)

  const admin = await createAdminServer({ proxy: second, metricsBindAddress: '127.0.0.1:0', maxLoopDelayMs: 0 })
  t.teardown(() => admin.close())
  const base = admin.metricsUrl ?? ''
  const ready = await httpGet(`${base}/readyz`)
  t.equal(ready.status, 503, '/readyz: not ready while a listener is in error')
  t.match(ready.body, /^not ready: 1 listener in error/)
  t.match(ready.body, `default/web:${port} TCP ${ip}:${port} (clusterIP): EADDRINUSE`, '/readyz names the frontend and its error')
  t.equal((await httpGet(`${base}/healthz`)).status, 200, '/healthz keeps kube-proxy\'s meaning: the process works')
  let scrape = parseExposition((await httpGet(`${base}/metrics`)).body)
  t.equal(valueOf(scrape, 'svcproxy_frontends_in_error'), 1)
  t.equal(valueOf(scrape, 'svcproxy_bind_failures_total'), 1)
  const doc = JSON.parse((await httpGet(`${base}/v1/services`)).body) as ServicesDoc
  const shown = renderStatus(doc)
  t.match(shown[0], /, 1 listener in error \(not ready\)$/, 'status: the first line says it')
  t.ok(shown.some((l) => new RegExp(`^default/web\\s+${port}\\s+${ip.replace(/\./g, '\\.')}:${port}\\s+clusterIP\\s+EADDRINUSE`).test(l)), 'status: a row names the listener and its error')

  // Retries that fail again are neither logged above debug nor counted again.
  await second.retryFailedListeners()
  await second.retryFailedListeners()
  t.equal(second.listenersInError().length, 1, 'still held by the first proxy')
  t.equal(msg(lines, 'cannot listen; retrying with backoff').length, 1, 'the failure is logged once, at error')
  t.equal(msg(lines, 'cannot listen; retrying with backoff')[0]?.level, 50)
  t.ok(msg(lines, 'still cannot listen').length >= 2, 'the failed retries are logged at debug')
  t.ok(msg(lines, 'still cannot listen').every((l) => l.level === 20))
  t.equal(second.dataplane.bindFailures, 1, 'and counted once')

  // The first proxy goes away; nothing is applied to the second.
  await first.close()
  const freedAt = Date.now()
  t.ok(await until(async () => (await through(ip, port)) === 'ping', 10_000), 'the second proxy serves the address on its own')
  const healedMs = Date.now() - freedAt
  // The retry after the freeing is the first or (on a slow machine) the second: 1 s or 2 s, ±25%.
  t.ok(healedMs < 2 * BIND_RETRY_MIN_MS * 1.25 * 2, `healed within the backoff (${healedMs} ms after the address was freed)`)
  t.equal(second.table.revision, 1, 'without any write')
  t.same(second.listenersInError(), [])
  const after = await httpGet(`${base}/readyz`)
  t.same([after.status, after.body], [200, 'ok\n'], '/readyz 200 once it binds')
  scrape = parseExposition((await httpGet(`${base}/metrics`)).body)
  t.equal(valueOf(scrape, 'svcproxy_frontends_in_error'), 0)
  t.equal(valueOf(scrape, 'svcproxy_bind_failures_total'), 1)
  t.equal(msg(lines, 'listening again after failing to bind').length, 1, 'the recovery is logged once')
  t.equal(second.address('web', port).port, port)
})

t.test('strictBind: the write rejects with BindError naming the listeners, and stays applied', async (t) => {
  const ip = '127.118.0.2'
  const port = await freePort(ip)
  const echo = await echoServer(t, '127.0.118.2')
  const holder = createServer()
  await listen(holder, ip, port)
  t.teardown(() => { holder.close() })

  const strict = fixedPortProxy(t, { strictBind: true })
  const err = await strict.apply(svcWithEndpoints('web', ip, port, [{ ip: '127.0.118.2', port: echo.port }])).catch((e: unknown) => e)
  t.ok(err instanceof BindError, `rejects with BindError: ${String(err)}`)
  if (!(err instanceof BindError)) return
  t.equal(err.code, 'SVCPROXY_BIND')
  t.equal(err.revision, 1)
  t.match(err.message, `default/web:${port} TCP ${ip}:${port} (clusterIP): EADDRINUSE`)
  t.equal(err.failed.length, 1)
  t.equal(strict.table.revision, 1, 'the change is in the table')
  t.same(strict.status().map((s) => [s.id, s.frontends[0]?.state]), [[`default/web:${port}`, 'error']])

  // A write whose listeners all bind resolves, strict or not.
  const other = await strict.apply(svcWithEndpoints('other', '127.118.0.3', await freePort('127.118.0.3'), [{ ip: '127.0.118.2', port: echo.port }]))
  t.same(other.failed, [])

  holder.close()
  await once(holder, 'close')
  await strict.retryFailedListeners() // what SIGHUP and a resync do: no need to wait for the backoff
  t.same(strict.listenersInError(), [])
  t.equal(await through(ip, port), 'ping')
})

t.test('a write reports only its own services\' listeners; a delete of one in error ends its retries', async (t) => {
  const ip = '127.118.0.4'
  const port = await freePort(ip)
  const holder = createServer()
  await listen(holder, ip, port)
  t.teardown(() => { holder.close() })
  const p = fixedPortProxy(t)
  const bad = await p.apply(svcWithEndpoints('held', ip, port, []))
  t.equal(bad.failed.length, 1)
  const good = await p.apply(svcWithEndpoints('fine', '127.118.0.5', await freePort('127.118.0.5'), []))
  t.same(good.failed, [], 'another service\'s failure is not this write\'s')
  t.equal(p.dataplane.inError, 1)
  const del = await p.delete('Service default/held')
  t.same(del.failed, [])
  t.equal(p.dataplane.inError, 0, 'a deleted service is not retried')
})

t.test('the file source: SIGHUP (reload) binds a listener in error again', async (t) => {
  const ip = '127.118.0.6'
  const port = await freePort(ip)
  const echo = await echoServer(t, '127.0.118.6')
  const holder = createServer()
  await listen(holder, ip, port)
  t.teardown(() => { holder.close() })
  const dir = await mkdtemp(join(tmpdir(), 'svcproxy-heal-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'services.json')
  await writeFile(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: svcWithEndpoints('web', ip, port, [{ ip: '127.0.118.6', port: echo.port }]) }))
  const p = fixedPortProxy(t)
  let calls = 0
  const retry = p.retryFailedListeners.bind(p)
  p.retryFailedListeners = () => { calls++; return retry() }
  const source = await watchConfigFile(file, p)
  t.teardown(() => source.close())
  t.equal(p.listenersInError().length, 1)
  holder.close()
  await once(holder, 'close')
  const before = calls
  await source.reload()
  t.ok(calls > before, 'reload calls the retry hook')
  t.same(p.listenersInError(), [], 'bound again by the reload')
  t.equal(await through(ip, port), 'ping')
})

t.test('the Redis source calls the retry hook at every resync and on SIGHUP', async (t) => {
  const r = await startRedis(t)
  const store = new RedisStore({ url: r.url })
  t.teardown(() => store.close())
  await store.apply(svcWithEndpoints('web', '127.118.0.7', await freePort('127.118.0.7'), []))
  const p = fixedPortProxy(t)
  let calls = 0
  const retry = p.retryFailedListeners.bind(p)
  p.retryFailedListeners = () => { calls++; return retry() }
  // No listener fails here, so the backoff timer never runs: every call counted is the source's.
  const source = await watchRedis(p, { url: r.url, blockMs: 50, startTimeoutMs: 3000, syncPeriodMs: 150 })
  t.teardown(() => source.close())
  const first = calls
  t.ok(first >= 1, 'the first list calls it')
  t.ok(await until(() => calls >= first + 2), `the periodic resync calls it (${calls - first} more)`)
  await source.close()

  let hupCalls = 0
  const q = fixedPortProxy(t)
  const retryQ = q.retryFailedListeners.bind(q)
  q.retryFailedListeners = () => { hupCalls++; return retryQ() }
  const slow = await watchRedis(q, { url: r.url, blockMs: 50, startTimeoutMs: 3000, syncPeriodMs: 3_600_000 })
  t.teardown(() => slow.close())
  const listed = hupCalls
  slow.resync() // what SIGHUP does
  t.ok(await until(() => hupCalls > listed), 'SIGHUP (resync) calls it')
})

/** Two daemons on one host want the same clusterIP:port: the scenario, end to end. */
t.test('two daemons: the second reports its listener in error and serves once the first stops, without any apply', async (t) => {
  const ip = '127.118.1.1'
  const port = await freePort(ip)
  const echo = await echoServer(t, '127.0.118.11')
  const dir = await mkdtemp(join(tmpdir(), 'svcproxy-heal-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'services.json')
  await writeFile(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: svcWithEndpoints('web', ip, port, [{ ip: '127.0.118.11', port: echo.port }]) }))

  const start = async (): Promise<{ child: ChildProcess, metrics: string, out: () => string }> => {
    const child = spawn(...cliCommand('run', '--config', file, '--healthz-bind-address', '', '--metrics-bind-address', '127.0.0.1:0'), { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
    let out = ''
    let err = ''
    child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr?.on('data', (d: Buffer) => { err += d.toString() })
    if (!(await until(() => /metrics on http/.test(err) || child.exitCode !== null, 30_000)) || child.exitCode !== null) throw new Error(`daemon did not start: ${err}`)
    return { child, metrics: /metrics on (http:\/\/\S+)\/metrics/.exec(err)?.[1] ?? '', out: () => out }
  }
  const one = await start()
  t.equal((await httpGet(`${one.metrics}/readyz`)).status, 200)
  const two = await start()
  const ready = await httpGet(`${two.metrics}/readyz`)
  t.equal(ready.status, 503, 'the second daemon is not ready')
  t.match(ready.body, `default/web:${port} TCP ${ip}:${port} (clusterIP): EADDRINUSE`)
  const st = await runCli(['status', '--server', two.metrics])
  t.equal(st.code, 0, st.stderr)
  t.match(st.stdout, /^revision 1, 1 service port, 0 active connections, 1 listener in error \(not ready\)$/m)
  t.match(st.stdout, new RegExp(`^default/web\\s+${port}\\s+127\\.118\\.1\\.1:${port}\\s+clusterIP\\s+EADDRINUSE`, 'm'))

  one.child.kill('SIGTERM')
  await once(one.child, 'exit')
  t.ok(await until(async () => (await through(ip, port)) === 'ping', 10_000), 'the second daemon serves the address on its own')
  t.ok(await until(async () => (await httpGet(`${two.metrics}/readyz`)).status === 200), '/readyz 200 after')
  const log = two.out().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>)
  t.equal(msg(log, 'cannot listen; retrying with backoff').length, 1, 'the failure is logged once')
  t.equal(msg(log, 'listening again after failing to bind').length, 1, 'and the recovery')
  t.equal(msg(log, 'config applied').length, 1, 'no reload or apply happened')
})
