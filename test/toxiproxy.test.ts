// The Toxiproxy-compatible API (docs/toxiproxy.md), driven by the real client from npm
// (toxiproxy-node-client), and by plain fetch where the client hides what Toxiproxy answers.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import t from 'tap'
import toxiproxyClient from 'toxiproxy-node-client'
import { ConfigError, startToxiproxyApi } from '../lib/index.js'
import { cliCommand, echoServer, fetchAll, freePort, nameServer, runCli, svcWithEndpoints, testProxy, until } from './helpers.js'

const { Toxiproxy } = toxiproxyClient

/** One round trip on a fresh connection: connect, send, read the echo; the time the echo took. */
async function echoTime (host: string, port: number, msg = 'ping'): Promise<{ reply: string, ms: number }> {
  const s: Socket = connect({ host, port })
  s.on('error', () => {})
  await once(s, 'connect')
  const t0 = performance.now()
  s.write(msg)
  let got = ''
  while (got.length < msg.length) {
    const [chunk] = await once(s, 'data') as [Buffer]
    got += chunk.toString()
  }
  const ms = performance.now() - t0
  s.destroy()
  return { reply: got, ms }
}

/** Resolves with 'refused' when nothing listens at host:port, 'open' otherwise. */
function probe (host: string, port: number): Promise<'open' | 'refused'> {
  return new Promise((resolve) => {
    const s = connect({ host, port })
    s.on('connect', () => { s.destroy(); resolve('open') })
    s.on('error', () => resolve('refused'))
  })
}

async function call (url: string, method: string, body?: unknown): Promise<{ status: number, text: string, type: string }> {
  const init: RequestInit = { method }
  if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body)
  const res = await fetch(url, init)
  return { status: res.status, text: await res.text(), type: res.headers.get('content-type') ?? '' }
}

function hostPort (listen: string): { host: string, port: number } {
  const i = listen.lastIndexOf(':')
  return { host: listen.slice(0, i), port: Number(listen.slice(i + 1)) }
}

async function setup (tt: { teardown: (fn: () => unknown) => void }): Promise<{ url: string, toxiproxy: InstanceType<typeof Toxiproxy>, proxy: ReturnType<typeof testProxy> }> {
  const proxy = testProxy(tt, { ephemeralPorts: false })
  const server = await startToxiproxyApi(proxy, { address: '127.0.0.1:0' })
  tt.teardown(() => server.close())
  return { url: server.url, toxiproxy: new Toxiproxy(server.url), proxy }
}

t.test('the client creates a proxy, adds latency, measures it, updates, removes it, resets', async (t) => {
  const { url, toxiproxy } = await setup(t)
  const echo = await echoServer(t)
  const p = await toxiproxy.createProxy({ name: 'echo', listen: '127.0.0.1:0', upstream: `localhost:${echo.port}` })
  t.equal(p.name, 'echo')
  t.equal(p.enabled, true)
  t.equal(p.upstream, `localhost:${echo.port}`, 'upstream as given')
  const at = hostPort(p.listen)
  t.equal(at.host, '127.0.0.1')
  t.ok(at.port > 0, `listen reports the port bound (${p.listen})`)
  t.equal((await echoTime(at.host, at.port, 'hello')).reply, 'hello', 'traffic flows through the proxy')
  const base = (await echoTime(at.host, at.port)).ms

  const toxic = await p.addToxic({ type: 'latency', attributes: { latency: 300 } } as Parameters<typeof p.addToxic>[0])
  t.equal(toxic.name, 'latency_downstream', 'Toxiproxy names it type_stream')
  t.equal(toxic.stream, 'downstream')
  t.equal(toxic.toxicity, 1)
  t.same(toxic.attributes, { latency: 300, jitter: 0 })
  const slow = await echoTime(at.host, at.port)
  t.ok(slow.ms >= 300, `a round trip takes at least the 300 ms latency (${slow.ms.toFixed(0)} ms; before: ${base.toFixed(1)} ms)`)

  const updated = await toxic.update({ attributes: { latency: 600 } } as Parameters<typeof toxic.update>[0])
  t.same(updated.attributes, { latency: 600, jitter: 0 }, 'update merges attributes')
  const slower = await echoTime(at.host, at.port)
  t.ok(slower.ms >= 600, `after the update: at least 600 ms (${slower.ms.toFixed(0)} ms)`)
  t.same((await toxiproxy.get('echo')).toJson().name, 'echo')
  const listed = await (await fetch(`${url}/proxies/echo/toxics`)).json() as unknown[]
  t.equal(listed.length, 1)

  await updated.remove()
  const fast = await echoTime(at.host, at.port)
  t.ok(fast.ms < 300, `removed: no latency left (${fast.ms.toFixed(1)} ms)`)
  t.same(await (await fetch(`${url}/proxies/echo/toxics`)).json(), [])

  // Disable: the listener closes, the record and its toxics stay; reset enables and clears.
  await p.addToxic({ type: 'latency', name: 'lag', stream: 'upstream', attributes: { latency: 300 } } as Parameters<typeof p.addToxic>[0])
  const off = await p.update({ ...p.toJson(), enabled: false })
  t.equal(off.enabled, false)
  t.equal(await probe(at.host, at.port), 'refused', 'disabled: nothing listens')
  t.equal((await toxiproxy.get('echo')).toJson().enabled, false)
  t.equal((await (await fetch(`${url}/proxies/echo/toxics`)).json() as unknown[]).length, 1, 'toxics kept while disabled')
  await toxiproxy.reset()
  const after = (await toxiproxy.getAll()).echo
  t.equal(after?.enabled, true, 'reset enables every proxy')
  t.equal(after?.listen, p.listen, 'on the same address')
  t.same(await (await fetch(`${url}/proxies/echo/toxics`)).json(), [], 'reset removes every toxic')
  const again = await echoTime(at.host, at.port, 'back')
  t.equal(again.reply, 'back')
  t.ok(again.ms < 300, 'no latency after reset')

  await p.remove()
  t.equal(await probe(at.host, at.port), 'refused', 'deleted: nothing listens')
  t.same(await toxiproxy.getAll(), {})
})

t.test('status codes and error bodies are Toxiproxy\'s', async (t) => {
  const { url, proxy } = await setup(t)
  const echo = await echoServer(t)
  const err = (status: number, error: string): string => `${JSON.stringify({ error, status })}\n`
  const v = await call(`${url}/version`, 'GET')
  t.equal(v.status, 200)
  t.match(JSON.parse(v.text), { version: /\d+\.\d+\.\d+/ })

  t.same(await call(`${url}/proxies/nope`, 'GET'), { status: 404, text: err(404, 'proxy not found'), type: 'application/json' })
  t.equal((await call(`${url}/proxies/nope`, 'DELETE')).status, 404)
  t.equal((await call(`${url}/proxies/nope/toxics`, 'GET')).text, err(404, 'proxy not found'))

  const body = { name: 'a', listen: '127.0.0.1:0', upstream: `127.0.0.1:${echo.port}` }
  const created = await call(`${url}/proxies`, 'POST', body)
  t.equal(created.status, 201)
  t.match(JSON.parse(created.text), { name: 'a', upstream: body.upstream, enabled: true, toxics: [] })
  t.same(await call(`${url}/proxies`, 'POST', body), { status: 409, text: err(409, 'proxy already exists'), type: 'application/json' })
  t.equal((await call(`${url}/proxies`, 'POST', { listen: '127.0.0.1:0', upstream: 'x:1' })).text, err(400, 'missing required field: name'))
  t.equal((await call(`${url}/proxies`, 'POST', { name: 'b', listen: '127.0.0.1:0' })).text, err(400, 'missing required field: upstream'))
  t.match(await call(`${url}/proxies`, 'POST', '{not json'), { status: 400, text: /^\{"error":"bad request body: / })
  t.match(await call(`${url}/proxies`, 'POST', { name: 'c', listen: '0.0.0.0:0', upstream: body.upstream }), { status: 400, text: /listen: expected the address of one host/ })

  const tox = await call(`${url}/proxies/a/toxics`, 'POST', { type: 'latency', attributes: { latency: 10 } })
  t.equal(tox.status, 200, 'a toxic is created with 200, as Toxiproxy')
  t.same(JSON.parse(tox.text), { name: 'latency_downstream', type: 'latency', stream: 'downstream', toxicity: 1, attributes: { latency: 10, jitter: 0 } })
  t.same(await call(`${url}/proxies/a/toxics`, 'POST', { type: 'latency' }), { status: 409, text: err(409, 'toxic already exists'), type: 'application/json' })
  t.equal((await call(`${url}/proxies/a/toxics`, 'POST', { type: 'latency', stream: 'sideways' })).text, err(400, 'stream was invalid, can be either upstream or downstream'))
  t.equal((await call(`${url}/proxies/a/toxics`, 'POST', { type: 'teleport' })).text, err(400, 'invalid toxic type'))
  t.match(await call(`${url}/proxies/a/toxics`, 'POST', { type: 'latency', name: 'neg', attributes: { latency: -5 } }), { status: 400, text: /bad request body: .*latency/ })
  t.same(await call(`${url}/proxies/a/toxics/nope`, 'GET'), { status: 404, text: err(404, 'toxic not found'), type: 'application/json' })
  t.equal((await call(`${url}/proxies/a/toxics/nope`, 'POST', { toxicity: 0.5 })).status, 404)
  t.equal((await call(`${url}/proxies/a/toxics/nope`, 'DELETE')).status, 404)
  const patched = await call(`${url}/proxies/a/toxics/latency_downstream`, 'PATCH', { toxicity: 0.5 })
  t.same(JSON.parse(patched.text).toxicity, 0.5, 'PATCH updates too (Toxiproxy 2.6+)')
  t.equal((await call(`${url}/proxies/a/toxics/latency_downstream`, 'DELETE')).status, 204)

  const busy = await echoServer(t)
  const inUse = await call(`${url}/proxies`, 'POST', { name: 'busy', listen: `127.0.0.1:${busy.port}`, upstream: body.upstream })
  t.match(inUse, { status: 500, text: new RegExp(`^\\{"error":"listen tcp 127\\.0\\.0\\.1:${busy.port}: .*EADDRINUSE`) }, 'a listen address in use: 500, as Toxiproxy')
  t.equal((await call(`${url}/proxies/busy`, 'GET')).status, 404, 'and nothing was created')
  t.same(proxy.status().filter((s) => s.frontends.some((f) => f.state !== 'listening')), [], 'no listener left in error')
  t.equal((await call(`${url}/proxies/a`, 'PUT', {})).status, 405)
  t.equal((await call(`${url}/nothing`, 'GET')).status, 404)
  const browser = await fetch(`${url}/proxies`, { headers: { 'user-agent': 'Mozilla/5.0' } })
  t.equal(browser.status, 403, 'browsers are refused, as Toxiproxy refuses them')

  const pop = await call(`${url}/populate`, 'POST', [
    { name: 'a', listen: JSON.parse(created.text).listen, upstream: body.upstream },
    { name: 'p2', listen: '127.0.0.1:0', upstream: body.upstream, enabled: true },
  ])
  t.equal(pop.status, 201)
  const proxies = (JSON.parse(pop.text) as { proxies: Array<{ name: string, listen: string }> }).proxies
  t.same(proxies.map((p) => p.name), ['a', 'p2'])
  t.equal(proxies[0]?.listen, JSON.parse(created.text).listen, 'populate keeps a proxy whose listen and upstream are unchanged')
  t.equal((await call(`${url}/populate`, 'POST', [{ name: 'x', listen: '127.0.0.1:0' }])).text, err(400, 'missing required field: upstream at proxy 1'))
  t.same(Object.keys(JSON.parse((await call(`${url}/proxies`, 'GET')).text)), ['a', 'p2'], 'a refused populate changes nothing')
  t.equal((await call(`${url}/reset`, 'POST')).status, 204)
  t.equal((await call(`${url}/proxies/a`, 'DELETE')).status, 204)
})

t.test('created disabled, moved, on IPv6; back after a source replaces the whole table', async (t) => {
  const { url, toxiproxy, proxy } = await setup(t)
  const echo = await echoServer(t)
  const p = await toxiproxy.createProxy({ name: 'later', listen: '127.0.0.1:0', upstream: `127.0.0.1:${echo.port}`, enabled: false } as Parameters<typeof toxiproxy.createProxy>[0])
  t.equal(p.enabled, false, 'created disabled: nothing listens yet')
  t.equal(p.listen, '127.0.0.1:0')
  await p.addToxic({ type: 'latency', attributes: { latency: 300 } } as Parameters<typeof p.addToxic>[0])
  t.match(await call(`${url}/proxies/later/toxics`, 'POST', { type: 'latency', name: 'bad', attributes: { latency: -1 } }), { status: 400 }, 'a disabled proxy\'s toxics are checked too')
  const on = await p.update({ ...p.toJson(), enabled: true })
  const at = hostPort(on.listen)
  t.ok(at.port > 0, `enabled: listening on ${on.listen}`)
  t.ok((await echoTime(at.host, at.port)).ms >= 300, 'with the toxic added while it was disabled')

  // A second proxy on the same address is a second port of the same Service.
  const q = await toxiproxy.createProxy({ name: 'second', listen: '127.0.0.1:0', upstream: `127.0.0.1:${echo.port}` })
  t.equal(proxy.table.statesOf('toxiproxy/listen-127-0-0-1').length, 2, 'one Service per listen address, a port per proxy')
  t.equal((await echoTime(at.host, at.port)).reply, 'ping', 'the first one keeps serving')

  // Moved: a new listen address closes the old listener; its toxics follow it.
  await q.addToxic({ type: 'latency', stream: 'upstream', attributes: { latency: 300 } } as Parameters<typeof q.addToxic>[0])
  const movedPort = await freePort('127.0.0.2')
  const moved = await q.update({ ...q.toJson(), listen: `127.0.0.2:${movedPort}` })
  t.equal(moved.listen, `127.0.0.2:${movedPort}`)
  const there = await echoTime('127.0.0.2', movedPort, 'moved')
  t.equal(there.reply, 'moved')
  t.ok(there.ms >= 300, `its toxic moved with it (${there.ms.toFixed(0)} ms)`)
  t.same(proxy.faults.list({ service: 'toxiproxy/listen-127-0-0-1' }).map((x) => x.name), ['latency_downstream'], 'and left the old address\'s Service')
  t.equal(await probe('127.0.0.1', hostPort(q.listen).port), 'refused', 'the old address is closed')

  const v6 = await call(`${url}/proxies`, 'POST', { name: 'v6', listen: '[::1]:0', upstream: `127.0.0.1:${echo.port}` })
  t.equal(v6.status, 201, v6.text)
  const v6at = (JSON.parse(v6.text) as { listen: string }).listen
  t.match(v6at, /^\[::1\]:\d+$/)
  t.equal((await echoTime('::1', Number(v6at.slice(v6at.lastIndexOf(':') + 1)), 'six')).reply, 'six', 'an IPv6 listen address serves')

  // A source that replaces the whole table (run --config reloading its file) removes the
  // Services behind API proxies: the API writes them again.
  await proxy.replace([])
  t.ok(await until(async () => await probe(at.host, at.port) === 'open' && await probe('127.0.0.2', movedPort) === 'open'), 'API proxies serve again after a replace')
  t.ok((await echoTime(at.host, at.port)).ms >= 300, 'with their toxics')
})

t.test('a Kubernetes service port is a proxy name.namespace:port, and its toxics apply to the service', async (t) => {
  const { url, toxiproxy, proxy } = await setup(t)
  const be = await nameServer(t, 'pod-a')
  const port = await freePort('127.96.7.7')
  const objs = svcWithEndpoints('web', '127.96.7.7', port, [{ ip: '127.0.0.1', port: be.port }]) as Array<{ spec?: { ports: Array<Record<string, unknown>> } }>
  ;(objs[0]?.spec?.ports[0] as Record<string, unknown>).name = 'http'
  ;((objs[1] as { subsets: Array<{ ports: Array<Record<string, unknown>> }> }).subsets[0]?.ports[0] as Record<string, unknown>).name = 'http'
  await proxy.apply(objs)
  const all = await toxiproxy.getAll()
  const web = all['web.default:http']
  t.ok(web !== undefined, `listed as web.default:http (got ${Object.keys(all).join(', ')})`)
  t.equal(web?.listen, `127.96.7.7:${port}`)
  t.equal(web?.upstream, `127.0.0.1:${be.port}`)
  t.equal(web?.enabled, true)

  const k = await toxiproxy.get('web.default:http')
  t.same(k.toJson(), web?.toJson(), 'GET /proxies/{name} answers as the listing does')
  t.equal((await call(`${url}/proxies/web.default:9999`, 'GET')).status, 404, 'a port the service does not have')
  const lag = await k.addToxic({ type: 'latency', attributes: { latency: 300 } } as Parameters<typeof k.addToxic>[0])
  t.same(proxy.faults.list({ service: 'default/web' }).map((x) => [x.name, x.scope.port]), [['latency_downstream', 'http']], 'the toxic is on the service port')
  const t0 = performance.now()
  const s = connect({ host: '127.96.7.7', port })
  s.on('error', () => {})
  s.write('x')
  let got = ''
  for await (const c of s) got += (c as Buffer).toString()
  const ms = performance.now() - t0
  t.equal(got, 'pod-a')
  t.ok(ms >= 300, `the service's traffic waits the latency (${ms.toFixed(0)} ms)`)
  await lag.remove()
  t.same(proxy.faults.list({ service: 'default/web' }), [])

  t.match(await call(`${url}/proxies/web.default:http`, 'DELETE'), { status: 409, text: /owned by its source/ })
  t.match(await call(`${url}/proxies/web.default:http`, 'POST', { enabled: false }), { status: 409 })
  t.equal((await call(`${url}/proxies/web.default:http`, 'POST', { enabled: true })).status, 200, 'an update that changes nothing is fine')
  t.same(await call(`${url}/proxies`, 'POST', { name: 'web.default:http', listen: '127.0.0.1:0', upstream: `127.0.0.1:${be.port}` }).then((r) => r.status), 409, 'its name is taken')
})

t.test('loopback only unless told otherwise', async (t) => {
  const proxy = testProxy(t)
  await t.rejects(startToxiproxyApi(proxy, { address: '10.1.2.3:8474' }), ConfigError, 'a non-loopback address is refused')
  await t.rejects(startToxiproxyApi(proxy, { address: '0.0.0.0:0' }), /toxiproxy-allow-remote/, 'the error says how to allow it')
  const s = await startToxiproxyApi(proxy, { address: '0.0.0.0:0', allowRemote: true })
  t.match(s.url, /^http:\/\/0\.0\.0\.0:\d+$/)
  await s.close()
})

t.test('svcproxy run --toxiproxy-address starts the API', async (t) => {
  const be = await nameServer(t, 'pod-b')
  const svcPort = await freePort('127.96.7.8')
  const dir = mkdtempSync(join(tmpdir(), 'svcproxy-toxiproxy-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'svc.json')
  writeFileSync(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: svcWithEndpoints('web', '127.96.7.8', svcPort, [{ ip: '127.0.0.1', port: be.port }]) }))
  const port = await freePort('127.0.0.1')
  const [cmd, argv] = cliCommand('run', '--config', file, '--toxiproxy-address', `127.0.0.1:${port}`, '--metrics-bind-address', '', '--healthz-bind-address', '', '--log-level', 'silent')
  const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  let exited = false
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  child.on('exit', () => { exited = true })
  t.teardown(() => { if (!exited) child.kill('SIGKILL') })
  await until(() => exited || stderr.includes('toxiproxy API on'))
  t.match(stderr, `svcproxy: toxiproxy API on http://127.0.0.1:${port}`, 'the CLI says where the API listens')
  const toxiproxy = new Toxiproxy(`http://127.0.0.1:${port}`)
  const web = await toxiproxy.get(`web.default:${svcPort}`)
  t.equal(web.listen, `127.96.7.8:${svcPort}`, 'the file\'s service is a proxy (an unnamed port by its number)')
  const cut = await web.addToxic({ type: 'limit_data', attributes: { bytes: 2 } } as Parameters<typeof web.addToxic>[0])
  t.equal(cut.name, 'limit_data_downstream')
  t.equal(await fetchAll('127.96.7.8', svcPort), 'po', 'its toxic applies to the file\'s service: 2 bytes, then closed')
  await cut.remove()
  t.equal(await fetchAll('127.96.7.8', svcPort), 'pod-b')
  child.kill('SIGTERM')
  if (!exited) await once(child, 'exit')
  t.equal(child.exitCode, 0)

  const refused = await runCli(['run', '--config', file, '--toxiproxy-address', '0.0.0.0:0', '--metrics-bind-address', '', '--healthz-bind-address', ''])
  t.equal(refused.code, 2, 'a non-loopback address without --toxiproxy-allow-remote is a usage error')
  t.match(refused.stderr, /--toxiproxy-allow-remote/)
})
