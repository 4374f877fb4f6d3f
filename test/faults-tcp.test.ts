// Issue 13 part 1: TCP faults ("toxics", Toxiproxy's semantics) and the fault registry
// (proxy.faults). Real sockets on 127.0.130.x (endpoints) and 127.130.x.y (services).
// Timing assertions are one-sided (elapsed ≥ the delay); accuracy is bench/faults.ts's job.
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { connect, createServer, type Server, type Socket } from 'node:net'
import t from 'tap'
import { type CloseEvent, type DialFailedEvent, type FaultEvent, FaultError, type ServiceProxy } from '../lib/index.js'
import { createAdminServer, type ServicesDoc } from '../lib/index.js'
import { renderStatus } from '../lib/cli/status.js'
import { parseExposition, valueOf } from './exposition.js'
import { echoServer, fetchAll, httpGet, listen, nameServer, svcWithEndpoints, testProxy, until } from './helpers.js'

type Tap = { teardown: (fn: () => unknown) => void }

/** Connects and resolves once connected. */
async function dialTo (p: ServiceProxy, svc: string): Promise<Socket> {
  const a = p.address(svc, 80)
  const s = connect(a.port, a.address)
  s.on('error', () => {})
  await once(s, 'connect')
  return s
}

/** Writes `msg` and resolves with the ms until `n` bytes came back. */
async function roundTrip (s: Socket, msg: string, n = msg.length): Promise<number> {
  const start = performance.now()
  let got = 0
  return await new Promise((resolve) => {
    const onData = (c: Buffer): void => {
      got += c.length
      if (got >= n) { s.off('data', onData); resolve(performance.now() - start) }
    }
    s.on('data', onData)
    s.write(msg)
  })
}

/** A backend that records every read (its size) and what it got. */
async function recorder (t: Tap, host: string): Promise<{ port: number, reads: number[], data: () => string, conns: Socket[] }> {
  const reads: number[] = []
  const chunks: Buffer[] = []
  const conns: Socket[] = []
  const server = createServer({ allowHalfOpen: true }, (s) => {
    conns.push(s)
    s.on('error', () => {})
    s.on('data', (c: Buffer) => { reads.push(c.length); chunks.push(c) })
  })
  const port = await listen(server, host)
  t.teardown(() => { for (const c of conns) c.destroy(); server.close() })
  return { port, reads, data: () => Buffer.concat(chunks).toString(), conns }
}

/** A backend that sends `bytes` bytes to each client, then ends. */
async function sender (t: Tap, host: string, bytes: number): Promise<number> {
  const server: Server = createServer((s) => { s.on('error', () => {}); s.end(Buffer.alloc(bytes, 97)) })
  const port = await listen(server, host)
  t.teardown(() => server.close())
  return port
}

const stat = (p: ServiceProxy, name: string): { applied: number, bytes: number } => {
  const x = p.faults.list().find((f) => f.name === name)
  return { applied: x?.applied ?? 0, bytes: x?.bytes ?? 0 }
}

t.test('latency: each direction adds its delay; stream both adds it twice', async (t) => {
  const e = await echoServer(t, '127.0.130.1')
  const p = testProxy(t)
  p.faults.add({ service: 'default/lat' }, { name: 'down', type: 'latency', stream: 'downstream', attributes: { latency: 150 } })
  await p.apply(svcWithEndpoints('lat', '127.130.0.1', 80, [{ ip: '127.0.130.1', port: e.port }]))
  const s = await dialTo(p, 'default/lat')
  t.ok(await roundTrip(s, 'ping') >= 150, 'downstream: a round trip takes ≥ 150 ms')
  s.destroy()
  p.faults.remove({ service: 'default/lat' }, 'down')
  p.faults.add({ service: 'default/lat', port: '80' }, { name: 'both', type: 'latency', stream: 'both', attributes: { latency: 100, jitter: 10 } })
  t.same(p.faults.list({ service: 'default/lat' }).map((x) => `${x.name} ${x.stream}`), ['both-upstream upstream', 'both-downstream downstream'])
  const s2 = await dialTo(p, 'default/lat')
  t.ok(await roundTrip(s2, 'ping') >= 180, 'both ways: ≥ 2 × (100 - 10) ms')
  s2.destroy()
})

t.test('bandwidth: N bytes take at least N / rate', async (t) => {
  const port = await sender(t, '127.0.130.2', 30_000)
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('bw', '127.130.0.2', 80, [{ ip: '127.0.130.2', port }]))
  p.faults.add({ service: 'default/bw' }, { type: 'bandwidth', attributes: { rate: 100 } }) // 100 KB/s
  const a = p.address('default/bw', 80)
  const start = performance.now()
  const got = await fetchAll(a.address, a.port)
  const ms = performance.now() - start
  t.equal(got.length, 30_000, 'every byte arrives')
  t.ok(ms >= 300, `30,000 bytes at 100 KB/s took ${ms.toFixed(0)} ms (≥ 300)`)
  t.equal(stat(p, 'bandwidth_downstream').bytes, 30_000, 'the bytes it throttled are counted')
})

t.test('timeout 0: nothing forwarded, the connection stays open until the toxic is removed', async (t) => {
  const r = await recorder(t, '127.0.130.3')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('hole', '127.130.0.3', 80, [{ ip: '127.0.130.3', port: r.port }]))
  p.faults.add({ service: 'default/hole' }, { name: 'hole', type: 'timeout', stream: 'upstream', attributes: { timeout: 0 } })
  const s = await dialTo(p, 'default/hole')
  let closed = false
  s.on('close', () => { closed = true })
  s.write('lost')
  t.ok(await until(() => stat(p, 'hole').bytes === 4), 'the toxic took the 4 bytes')
  t.equal(r.data(), '', 'the endpoint got nothing')
  t.notOk(closed, 'the connection is still open')
  p.faults.remove({ service: 'default/hole' }, 'hole')
  s.write('after')
  t.ok(await until(() => r.data() === 'after'), 'once removed, data flows again (what was dropped stays dropped)')
  s.destroy()
})

t.test('timeout T: the connection is closed T ms after it was established (reason fault)', async (t) => {
  const r = await recorder(t, '127.0.130.4')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('tmo', '127.130.0.4', 80, [{ ip: '127.0.130.4', port: r.port }]))
  p.faults.add({ service: 'default/tmo' }, { type: 'timeout', attributes: { timeout: 200 } })
  const closes: CloseEvent[] = []
  p.on('close', (e) => closes.push(e))
  const start = performance.now()
  const s = await dialTo(p, 'default/tmo')
  await once(s, 'close')
  t.ok(performance.now() - start >= 200, 'closed after ≥ 200 ms')
  t.ok(await until(() => closes.length === 1))
  t.equal(closes[0]?.reason, 'fault')
})

t.test('reset_peer: the client sees ECONNRESET after the timeout', async (t) => {
  const r = await recorder(t, '127.0.130.5')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('rst', '127.130.0.5', 80, [{ ip: '127.0.130.5', port: r.port }]))
  p.faults.add({ service: 'default/rst' }, { type: 'reset_peer', attributes: { timeout: 100 } })
  const start = performance.now()
  const s = await dialTo(p, 'default/rst')
  const [err] = await once(s, 'error') as [NodeJS.ErrnoException]
  t.equal(err.code, 'ECONNRESET')
  t.ok(performance.now() - start >= 100, 'after ≥ 100 ms')
})

t.test('slicer: the endpoint sees many small reads, the data intact', async (t) => {
  const r = await recorder(t, '127.0.130.6')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('slice', '127.130.0.6', 80, [{ ip: '127.0.130.6', port: r.port }]))
  p.faults.add({ service: 'default/slice' }, { type: 'slicer', stream: 'upstream', attributes: { average_size: 10, size_variation: 5, delay: 5000 } })
  const s = await dialTo(p, 'default/slice')
  const msg = 'abcdefghij'.repeat(50)
  s.write(msg)
  t.ok(await until(() => r.data().length === 500))
  t.equal(r.data(), msg, 'the same bytes in the same order')
  t.ok(r.reads.length >= 10, `${r.reads.length} reads for one 500-byte write (about 50 slices, 5 ms apart)`)
  s.destroy()
})

t.test('limit_data: exactly N bytes, then the connection closes', async (t) => {
  const port = await sender(t, '127.0.130.7', 5000)
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('lim', '127.130.0.7', 80, [{ ip: '127.0.130.7', port }]))
  p.faults.add({ service: 'default/lim' }, { type: 'limit_data', attributes: { bytes: 1000 } })
  const closes: CloseEvent[] = []
  p.on('close', (e) => closes.push(e))
  const a = p.address('default/lim', 80)
  t.equal((await fetchAll(a.address, a.port)).length, 1000)
  t.ok(await until(() => closes.length === 1))
  t.equal(closes[0]?.reason, 'fault')
  t.equal(closes[0]?.bytesOut, 1000)
})

t.test('slow_close: the FIN arrives at least `delay` after the data', async (t) => {
  const n = await nameServer(t, 'hello', '127.0.130.8')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('slow', '127.130.0.8', 80, [{ ip: '127.0.130.8', port: n.port }]))
  p.faults.add({ service: 'default/slow' }, { type: 'slow_close', attributes: { delay: 250 } })
  const start = performance.now() // the endpoint sends and closes once connected: after this
  const s = await dialTo(p, 'default/slow')
  let data = ''
  s.on('data', (c: Buffer) => { data += c.toString() })
  await once(s, 'end')
  t.equal(data, 'hello', 'the data first')
  t.ok(performance.now() - start >= 250, 'the end ≥ 250 ms after the endpoint closed')
  s.destroy()
})

t.test('down refuse: the ladder moves on; with one endpoint the client is reset', async (t) => {
  const a = await nameServer(t, 'a', '127.0.130.11')
  const b = await nameServer(t, 'b', '127.0.130.12')
  const p = testProxy(t)
  p.faults.add({ service: 'default/dn', endpoint: `127.0.130.11:${a.port}` }, { name: 'off', type: 'down' })
  await p.apply(svcWithEndpoints('dn', '127.130.0.11', 80, [{ ip: '127.0.130.11', port: a.port }, { ip: '127.0.130.12', port: b.port }]))
  const failed: DialFailedEvent[] = []
  p.on('dialFailed', (e) => failed.push(e))
  const addr = p.address('default/dn', 80)
  const got: string[] = []
  for (let i = 0; i < 4; i++) got.push(await fetchAll(addr.address, addr.port))
  t.same(got, ['b', 'b', 'b', 'b'], 'every connection served by the other endpoint')
  t.equal(a.accepted(), 0, 'the down endpoint was never dialled')
  t.ok(failed.length >= 1 && failed.every((f) => f.endpoint === `127.0.130.11:${a.port}` && /ECONNREFUSED/.test(f.error)), 'dial failures name it, as refused')

  await p.apply(svcWithEndpoints('dn', '127.130.0.11', 80, [{ ip: '127.0.130.11', port: a.port }]))
  const closes: CloseEvent[] = []
  p.on('close', (e) => closes.push(e))
  t.equal(await fetchAll(addr.address, addr.port), 'ERR:ECONNRESET', 'one endpoint, down: the client is reset')
  t.ok(await until(() => closes.some((c) => c.endpoint === null)))
  t.equal(closes.find((c) => c.endpoint === null)?.reason, 'dial-failed')
  p.faults.remove({ service: 'default/dn', endpoint: `127.0.130.11:${a.port}` }, 'off')
  t.equal(await fetchAll(addr.address, addr.port), 'a', 'removed: the endpoint serves again')
})

t.test('down blackhole: the dial times out, then the next endpoint serves', async (t) => {
  const a = await nameServer(t, 'a', '127.0.130.13')
  const b = await nameServer(t, 'b', '127.0.130.14')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('bh', '127.130.0.13', 80, [{ ip: '127.0.130.13', port: a.port }, { ip: '127.0.130.14', port: b.port }]))
  p.faults.add({ service: 'default/bh', port: '80', endpoint: `127.0.130.13:${a.port}` }, { type: 'down', attributes: { mode: 'blackhole' } })
  const failed: DialFailedEvent[] = []
  p.on('dialFailed', (e) => failed.push(e))
  const addr = p.address('default/bh', 80)
  const start = performance.now()
  t.equal(await fetchAll(addr.address, addr.port), 'b')
  t.ok(performance.now() - start >= 250, 'after the first rung\'s 250 ms timeout')
  t.same(failed.map((f) => f.error), ['dial timeout'])
  t.equal(a.accepted(), 0)
})

t.test('toxicity 0 never applies, 1 always; fault events say which toxic, when observed', async (t) => {
  const e = await echoServer(t, '127.0.130.15')
  const p = testProxy(t, { seed: 7 })
  await p.apply(svcWithEndpoints('tox', '127.130.0.15', 80, [{ ip: '127.0.130.15', port: e.port }]))
  p.faults.add({ service: 'default/tox' }, { name: 'never', type: 'latency', toxicity: 0, attributes: { latency: 60_000 } })
  p.faults.add({ service: 'default/tox' }, { name: 'always', type: 'latency', toxicity: 1, attributes: { latency: 1 } })
  const events: FaultEvent[] = []
  p.on('fault', (ev) => events.push(ev))
  for (let i = 0; i < 10; i++) {
    const s = await dialTo(p, 'default/tox')
    await roundTrip(s, 'x')
    s.destroy()
  }
  t.equal(stat(p, 'never').applied, 0)
  t.equal(stat(p, 'always').applied, 10)
  t.equal(events.length, 10)
  t.match(events[0], { service: 'default/tox', port: '80', protocol: 'TCP', endpoint: `127.0.130.15:${e.port}`, toxic: 'always', type: 'latency', stream: 'downstream' })
})

t.test('added, changed and removed while traffic flows', async (t) => {
  const e = await echoServer(t, '127.0.130.16')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('live', '127.130.0.16', 80, [{ ip: '127.0.130.16', port: e.port }]))
  const before = await dialTo(p, 'default/live') // no toxic yet: the engine's own path
  p.faults.add({ service: 'default/live' }, { name: 'lag', type: 'latency', attributes: { latency: 0 } })
  const s = await dialTo(p, 'default/live')
  await roundTrip(s, 'a')
  p.faults.update({ service: 'default/live' }, 'lag', { attributes: { latency: 200 } })
  t.ok(await roundTrip(s, 'b') >= 200, 'an update reaches the open connection')
  t.equal(p.faults.list()[0]?.attributes.latency, 200)
  await roundTrip(before, 'c') // the connection from before any toxic still works
  p.faults.remove({ service: 'default/live' }, 'lag')
  t.same(p.faults.list(), [])
  const bytes = stat(p, 'lag').bytes
  await roundTrip(s, 'd')
  t.equal(p.dataplane.runtimes.get('default/live:80')?.faults ?? null, null, 'no toxic left: the port is back on the plain path')
  t.equal(bytes, 0, 'removed toxics are no longer listed')
  s.destroy()
  before.destroy()
})

t.test('endpoint scope hits only that endpoint; toxics set before the service exists apply when it appears and survive re-creation', async (t) => {
  const a = await nameServer(t, 'a', '127.0.130.17')
  const b = await nameServer(t, 'b', '127.0.130.18')
  const p = testProxy(t)
  p.faults.add({ service: 'default/ep', endpoint: `127.0.130.18:${b.port}` }, { name: 'onb', type: 'latency', attributes: { latency: 1 } })
  const events: FaultEvent[] = []
  p.on('fault', (ev) => events.push(ev))
  const objs = svcWithEndpoints('ep', '127.130.0.17', 80, [{ ip: '127.0.130.17', port: a.port }, { ip: '127.0.130.18', port: b.port }])
  await p.apply(objs)
  const go = async (): Promise<string[]> => {
    const addr = p.address('default/ep', 80)
    const got: string[] = []
    for (let i = 0; i < 4; i++) got.push(await fetchAll(addr.address, addr.port))
    return got
  }
  t.same(await go(), ['a', 'b', 'a', 'b'])
  t.equal(events.length, 2, 'two of four connections went to b')
  t.ok(events.every((ev) => ev.endpoint === `127.0.130.18:${b.port}`))
  await p.delete('Service default/ep', 'Endpoints default/ep')
  await p.apply(objs)
  await go()
  t.equal(events.length, 4, 'the re-created service port has the toxic again')
  t.equal(p.status().find((s) => s.id === 'default/ep:80')?.faults[0]?.name, 'onb', 'status() shows it')
})

t.test('validation errors name the field; an invalid change changes nothing', async (t) => {
  const p = testProxy(t)
  const svc = { service: 'default/v' }
  const bad: Array<[unknown, unknown, RegExp]> = [
    [svc, { type: 'latency', attributes: { latency: -5 } }, /^toxic\.attributes\.latency: expected a number ≥ 0.*got -5$/],
    [svc, { type: 'lag' }, /^toxic\.type: expected one of latency, .*got "lag"$/],
    [svc, { type: 'latency', stream: 'sideways' }, /^toxic\.stream:/],
    [svc, { type: 'latency', toxicity: 1.5 }, /^toxic\.toxicity: expected a number from 0 to 1, got 1\.5$/],
    [svc, { type: 'latency', attributes: { delay: 1 } }, /^toxic\.attributes\.delay: unknown attribute of a latency toxic \(it takes latency, jitter\)$/],
    [svc, { type: 'bandwidth', attributes: { rate: '100' } }, /^toxic\.attributes\.rate: .*got "100"$/],
    [svc, { type: 'slicer', attributes: {} }, /^toxic\.attributes\.average_size:/],
    [svc, { type: 'slicer', attributes: { average_size: 10, size_variation: 10 } }, /^toxic\.attributes\.size_variation: expected less than average_size/],
    [svc, { type: 'limit_data', attributes: { bytes: 1.5 } }, /^toxic\.attributes\.bytes: expected an integer/],
    [svc, { type: 'down', attributes: { mode: 'drop' } }, /^toxic\.attributes\.mode: expected "refuse" or "blackhole"/],
    [svc, { type: 'loss', attributes: { probability: 2 } }, /^toxic\.attributes\.probability: expected a number from 0 to 1/],
    [svc, { type: 'latency', name: 'a/b' }, /^toxic\.name:/],
    [{ service: 'Not A Name' }, { type: 'latency' }, /^scope\.service:/],
    [{ service: 'default/v', endpoint: '1.2.3.4' }, { type: 'latency' }, /^scope\.endpoint: expected "ip:port"/],
    [{ service: 'default/v', port: 70000 }, { type: 'latency' }, /^scope\.port:/],
  ]
  for (const [scope, input, re] of bad) {
    let err: unknown = null
    try { p.faults.add(scope as never, input as never) } catch (e) { err = e }
    t.ok(err instanceof FaultError && err.code === 'SVCPROXY_FAULT' && re.test(err.message), `${JSON.stringify(input)} → ${err instanceof Error ? err.message : 'no error'}`)
  }
  t.same(p.faults.list(), [], 'nothing was added')
  p.faults.add(svc, { name: 'lag', type: 'latency', attributes: { latency: 10 } })
  t.throws(() => p.faults.add(svc, { name: 'lag', type: 'latency' }), /toxic\.name: lag already exists on default\/v/)
  t.throws(() => p.faults.update(svc, 'lag', { attributes: { jitter: -1 } }), /toxic\.attributes\.jitter/)
  t.throws(() => p.faults.update(svc, 'lag', { type: 'bandwidth' }), /toxic\.type: cannot change/)
  t.throws(() => p.faults.update(svc, 'nope', { toxicity: 0.5 }), /toxic\.name: no toxic nope/)
  t.same(p.faults.list().map((x) => x.attributes), [{ latency: 10, jitter: 0 }], 'the invalid updates changed nothing')
  t.equal(p.faults.remove(svc, 'nope'), false)
  p.faults.add({ service: 'other' }, { type: 'latency' })
  t.equal(p.faults.list({ service: 'default/other' }).length, 1, 'a bare name is in default')
  p.faults.clear({ service: 'default/v' })
  t.equal(p.faults.list().length, 1)
  p.faults.clear()
  t.same(p.faults.list(), [])
})

t.test('close() with toxics holding data leaves nothing open: the process exits by itself', async (t) => {
  const loader = process.execArgv.filter((a) => a.includes('typescript'))
  const child = spawn(process.execPath, [...loader, new URL('./faults-tcp-child.ts', import.meta.url).pathname], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, 60_000)
  const [code] = await once(child, 'exit') as [number | null]
  clearTimeout(timer)
  t.same(out.trim().split('\n'), ['held', 'closed'], 'data was held by the toxics, then close() returned')
  t.equal(code, 0, 'the child exited by itself (killed after 60 s otherwise)')
})

t.test('visible in status(), /v1/services, svcproxy status and /metrics', async (t) => {
  const e = await echoServer(t, '127.0.130.19')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('vis', '127.130.0.19', 80, [{ ip: '127.0.130.19', port: e.port }]))
  p.faults.add({ service: 'default/vis' }, { name: 'lag', type: 'latency', stream: 'both', attributes: { latency: 5 } })
  p.faults.add({ service: 'default/vis', endpoint: `127.0.130.19:${e.port}` }, { name: 'drop', type: 'loss', attributes: { probability: 0.5 } })
  const s = await dialTo(p, 'default/vis')
  await roundTrip(s, 'hello')
  s.destroy()
  const st = p.status().find((x) => x.id === 'default/vis:80')
  t.same(st?.faults.map((f) => f.name), ['lag-upstream', 'lag-downstream', 'drop'], 'status() lists every toxic set on the port, of either protocol')
  const admin = await createAdminServer({ proxy: p, metricsBindAddress: '127.0.0.1:0' })
  t.teardown(() => admin.close())
  const doc = JSON.parse((await httpGet(`${admin.metricsUrl ?? ''}/v1/services`)).body) as ServicesDoc
  const vis = doc.services.find((x) => x.id === 'default/vis:80')
  t.match(vis?.faults[0], { name: 'lag-upstream', type: 'latency', stream: 'upstream', toxicity: 1, attributes: { latency: 5, jitter: 0 }, scope: { service: 'default/vis' }, applied: 1, bytes: 5 })
  const lines = renderStatus(doc).join('\n')
  t.match(lines, /lag-downstream\s+latency\s+downstream\s+1\s+service\s+latency=5 jitter=0/, 'svcproxy status shows a table of them')
  const m = parseExposition((await httpGet(`${admin.metricsUrl ?? ''}/metrics`)).body)
  const SP = { namespace: 'default', service: 'vis', port: '80' }
  t.equal(valueOf(m, 'svcproxy_faults_active', { ...SP, type: 'latency' }), 2, 'a loss toxic does not apply to a TCP port')
  t.equal(valueOf(m, 'svcproxy_fault_connections_total', { ...SP, type: 'latency' }), 2)
  t.equal(valueOf(m, 'svcproxy_fault_bytes_total', { ...SP, type: 'latency' }), 10, '5 bytes each way')
})

t.test('the fault path keeps data intact and bounded: 8 MiB echoed through latency and bandwidth toxics', async (t) => {
  const e = await echoServer(t, '127.0.130.20')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('bulk', '127.130.0.20', 80, [{ ip: '127.0.130.20', port: e.port }]))
  p.faults.add({ service: 'default/bulk' }, { name: 'lag', type: 'latency', stream: 'both', attributes: { latency: 5, jitter: 5 } })
  p.faults.add({ service: 'default/bulk' }, { name: 'bw', type: 'bandwidth', stream: 'upstream', attributes: { rate: 100_000 } })
  const data = randomBytes(8 << 20)
  const s = await dialTo(p, 'default/bulk')
  const hash = createHash('sha256')
  let got = 0
  let maxQueued = 0
  const rt = p.dataplane.runtimes.get('default/bulk:80')
  const done = new Promise<void>((resolve) => {
    s.on('data', (c: Buffer) => {
      hash.update(c)
      got += c.length
      for (const pair of p.dataplane.frontends.values()) if (pair.rt === rt) maxQueued = Math.max(maxQueued, ...[...(pair as unknown as { pairs: Set<{ queued: () => number }> }).pairs].map((x) => x.queued()))
      if (got === data.length) resolve()
    })
  })
  s.end(data)
  await done
  t.equal(hash.digest('hex'), createHash('sha256').update(data).digest('hex'), 'the same bytes, in order')
  t.ok(maxQueued < 8 << 20, `at most ${maxQueued} bytes queued in the proxy at once (backpressure held)`)
  s.destroy()
})

t.test('down on the pinned endpoint (sessionAffinity ClientIP): the pin is dropped and the client moves for good', async (t) => {
  const a = await nameServer(t, 'a', '127.0.130.21')
  const b = await nameServer(t, 'b', '127.0.130.22')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('aff', '127.130.0.21', 80, [{ ip: '127.0.130.21', port: a.port }, { ip: '127.0.130.22', port: b.port }], { spec: { sessionAffinity: 'ClientIP' } }))
  const addr = p.address('default/aff', 80)
  const first = await fetchAll(addr.address, addr.port)
  t.equal(await fetchAll(addr.address, addr.port), first, 'pinned')
  const pinned = first === 'a' ? `127.0.130.21:${a.port}` : `127.0.130.22:${b.port}`
  p.faults.add({ service: 'default/aff', endpoint: pinned }, { name: 'off', type: 'down' })
  const moved = await fetchAll(addr.address, addr.port)
  t.not(moved, first, 'the ladder moved to the other endpoint')
  p.faults.clear({ service: 'default/aff' })
  t.equal(await fetchAll(addr.address, addr.port), moved, 'and the client stays pinned there after the fault is gone')
})
