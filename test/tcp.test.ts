import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { connect, createServer, type Socket } from 'node:net'
import t from 'tap'
import { ValidationError, type CloseEvent, type DialFailedEvent } from '../lib/index.js'
import { blackhole, echoServer, fetchAll, listen, nameServer, sleep, svcWithEndpoints, testProxy, until } from './helpers.js'

t.test('round-robin walks endpoints in sorted IP order, one cursor per service port', async (t) => {
  const c = await nameServer(t, 'c', '127.0.1.3')
  const a = await nameServer(t, 'a', '127.0.1.1')
  const b = await nameServer(t, 'b', '127.0.1.2')
  const p = testProxy(t)
  // Listed out of order on purpose: the table sorts by IP.
  await p.apply(svcWithEndpoints('rr', '127.50.0.1', 80, [{ ip: '127.0.1.3', port: c.port }, { ip: '127.0.1.1', port: a.port }, { ip: '127.0.1.2', port: b.port }]))
  const addr = p.address('default/rr', 80)
  const got: string[] = []
  for (let i = 0; i < 7; i++) got.push(await fetchAll(addr.address, addr.port))
  t.same(got, ['a', 'b', 'c', 'a', 'b', 'c', 'a'])

  // A changed endpoint set restarts the cursor at the first endpoint.
  await p.apply(svcWithEndpoints('rr', '127.50.0.1', 80, [{ ip: '127.0.1.2', port: b.port }, { ip: '127.0.1.3', port: c.port }]))
  const after: string[] = []
  for (let i = 0; i < 3; i++) after.push(await fetchAll(addr.address, addr.port))
  t.same(after, ['b', 'c', 'b'])
})

t.test('random choice (annotation) reaches every endpoint', async (t) => {
  const servers = await Promise.all(['x', 'y', 'z'].map((n, i) => nameServer(t, n, `127.0.2.${i + 1}`)))
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('rnd', '127.50.0.2', 80, servers.map((s, i) => ({ ip: `127.0.2.${i + 1}`, port: s.port })), { annotations: { 'svcproxy.io/load-balancer': 'random' } }))
  const addr = p.address('default/rnd', 80)
  const counts: Record<string, number> = {}
  const seq: string[] = []
  for (let i = 0; i < 60; i++) {
    const r = await fetchAll(addr.address, addr.port)
    seq.push(r)
    counts[r] = (counts[r] ?? 0) + 1
  }
  t.same(Object.keys(counts).sort(), ['x', 'y', 'z'], 'all endpoints chosen')
  // Round-robin would give exactly x,y,z,x,y,z,...: random must not.
  t.not(seq.join(''), 'xyz'.repeat(20), 'not the round-robin sequence')
  t.equal(p.status()[0]?.algorithm, 'random')
})

t.test('dial ladder: a refusing endpoint is skipped, the next one answers', async (t) => {
  const good = await nameServer(t, 'good', '127.0.3.2')
  // A port with nothing listening refuses at once.
  const dead = createServer()
  const deadPort = await listen(dead, '127.0.3.1')
  dead.close()
  const p = testProxy(t)
  const failures: DialFailedEvent[] = []
  p.on('dialFailed', (e) => failures.push(e))
  await p.apply(svcWithEndpoints('ladder', '127.50.0.3', 80, [{ ip: '127.0.3.1', port: deadPort }, { ip: '127.0.3.2', port: good.port }]))
  const addr = p.address('default/ladder', 80)
  for (let i = 0; i < 4; i++) t.equal(await fetchAll(addr.address, addr.port), 'good', `connection ${i} served by the live endpoint`)
  t.ok(failures.length >= 2, 'dial failures were reported')
  t.equal(failures[0]?.endpoint, `127.0.3.1:${deadPort}`)
  t.equal(p.status()[0]?.dialFailures, failures.length)
})

t.test('all endpoints refusing: the client is reset after 4 attempts, not left hanging', async (t) => {
  const dead = createServer()
  const deadPort = await listen(dead, '127.0.3.5')
  dead.close()
  const p = testProxy(t)
  const closes: CloseEvent[] = []
  const failures: DialFailedEvent[] = []
  p.on('close', (e) => closes.push(e))
  p.on('dialFailed', (e) => failures.push(e))
  await p.apply(svcWithEndpoints('dead', '127.50.0.5', 80, [{ ip: '127.0.3.5', port: deadPort }]))
  const addr = p.address('default/dead', 80)
  const r = await fetchAll(addr.address, addr.port)
  t.equal(r, 'ERR:ECONNRESET')
  await until(() => closes.length === 1)
  t.equal(failures.length, 4, 'exactly four attempts')
  t.same(failures.map((f) => f.attempt), [0, 1, 2, 3])
  t.equal(closes[0]?.reason, 'dial-failed')
})

t.test('no endpoints: reset at once', async (t) => {
  const p = testProxy(t)
  const closes: CloseEvent[] = []
  p.on('close', (e) => closes.push(e))
  await p.apply(svcWithEndpoints('empty', '127.50.0.6', 80, []))
  const addr = p.address('default/empty', 80)
  t.equal(await fetchAll(addr.address, addr.port), 'ERR:ECONNRESET')
  await until(() => closes.length === 1)
  t.equal(closes[0]?.reason, 'no-endpoints')
})

t.test('a blackholed endpoint: ladder times out to the next; other clients are not blocked meanwhile', async (t) => {
  const holePort = await blackhole(t)
  const good = await nameServer(t, 'good', '127.0.0.2')
  const p = testProxy(t)
  const failures: DialFailedEvent[] = []
  p.on('dialFailed', (e) => failures.push(e))
  // 127.0.0.1 sorts before 127.0.0.2: the first pick is the black hole.
  await p.apply(svcWithEndpoints('hole', '127.50.0.7', 80, [{ ip: '127.0.0.1', port: holePort }, { ip: '127.0.0.2', port: good.port }]))
  const addr = p.address('default/hole', 80)
  let slowDone = false
  const slow = fetchAll(addr.address, addr.port).then((r) => { slowDone = true; return r })
  // While the first client waits on the black hole, a second client is served right away.
  const fast = await fetchAll(addr.address, addr.port)
  t.equal(fast, 'good')
  t.equal(slowDone, false, 'the second client finished while the first was still dialing')
  t.equal(await slow, 'good', 'the first client moved on to the next endpoint after the timeout')
  t.equal(failures[0]?.error, 'dial timeout')
})

t.test('server-speaks-first protocol works (dial on accept)', async (t) => {
  const server = createServer((s) => { s.write('220 ready\r\n'); s.on('data', (d) => { if (d.toString().startsWith('QUIT')) s.end('221 bye\r\n') }) })
  const port = await listen(server, '127.0.4.1')
  t.teardown(() => server.close())
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('smtp', '127.50.0.8', 25, [{ ip: '127.0.4.1', port }]))
  const addr = p.address('default/smtp', 25)
  const s = connect(addr.port, addr.address)
  const [greeting] = await once(s, 'data') as [Buffer]
  t.equal(greeting.toString(), '220 ready\r\n', 'greeting arrives before the client writes anything')
  s.write('QUIT\r\n')
  const [bye] = await once(s, 'data') as [Buffer]
  t.equal(bye.toString(), '221 bye\r\n')
  s.destroy()
})

t.test('half-close: client FIN reaches the backend, which may keep answering', async (t) => {
  // The backend reads until EOF, then answers with what it got, then closes.
  const server = createServer({ allowHalfOpen: true }, (s) => {
    const chunks: Buffer[] = []
    s.on('data', (d) => chunks.push(d))
    s.on('end', () => { setTimeout(() => s.end(`got:${Buffer.concat(chunks).toString()}`), 50) })
  })
  const port = await listen(server, '127.0.4.2')
  t.teardown(() => server.close())
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('half', '127.50.0.9', 80, [{ ip: '127.0.4.2', port }]))
  const addr = p.address('default/half', 80)
  t.equal(await fetchAll(addr.address, addr.port, 'hello'), 'got:hello')
})

t.test('half-close: backend FIN reaches the client, which may keep sending', async (t) => {
  let received = ''
  const done = new Promise<void>((resolve) => {
    const server = createServer({ allowHalfOpen: true }, (s) => {
      s.end('bye-first') // backend closes its write side at once
      s.on('data', (d) => { received += d.toString() })
      s.on('end', () => resolve())
    })
    void listen(server, '127.0.4.3').then((port) => { serverPort = port })
    t.teardown(() => server.close())
  })
  let serverPort = 0
  await until(() => serverPort !== 0)
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('half2', '127.50.0.10', 80, [{ ip: '127.0.4.3', port: serverPort }]))
  const addr = p.address('default/half2', 80)
  const s = connect({ host: addr.address, port: addr.port, allowHalfOpen: true })
  let got = ''
  s.on('data', (d) => { got += d.toString() })
  await once(s, 'end')
  t.equal(got, 'bye-first')
  s.end('client-after-fin')
  await done
  t.equal(received, 'client-after-fin', 'client data after the backend FIN still arrives')
})

t.test('100 MB each way with matching sha256', async (t) => {
  const { port } = await echoServer(t, '127.0.4.4')
  const p = testProxy(t)
  const closes: CloseEvent[] = []
  p.on('close', (e) => closes.push(e))
  await p.apply(svcWithEndpoints('bulk', '127.50.0.11', 80, [{ ip: '127.0.4.4', port }]))
  const addr = p.address('default/bulk', 80)
  const total = 100 * 1024 * 1024
  const block = randomBytes(1024 * 1024)
  const sent = createHash('sha256')
  const recv = createHash('sha256')
  let received = 0
  const s = connect({ host: addr.address, port: addr.port, allowHalfOpen: true })
  s.on('data', (d: Buffer) => { recv.update(d); received += d.length })
  await once(s, 'connect')
  for (let i = 0; i < 100; i++) {
    sent.update(block)
    if (!s.write(block)) await once(s, 'drain')
  }
  s.end()
  await once(s, 'close')
  t.equal(received, total)
  t.equal(recv.digest('hex'), sent.digest('hex'))
  await until(() => closes.length === 1)
  t.equal(closes[0]?.bytesIn, total)
  t.equal(closes[0]?.bytesOut, total)
  t.equal(closes[0]?.reason, 'eof')
  t.equal(closes[0]?.frontend, `${addr.address}:${addr.port}`, 'close event names the frontend')
  t.equal(closes[0]?.endpoint, `127.0.4.4:${port}`)
})

t.test('a slow reader does not make the proxy buffer without bound', async (t) => {
  // Backend floods; the client reads nothing for a while.
  const big = Buffer.alloc(64 * 1024, 1)
  let written = 0
  const server = createServer((s) => {
    s.on('error', () => {})
    const pump = (): void => { while (written < 200 * 1024 * 1024) { written += big.length; if (!s.write(big)) { s.once('drain', pump); return } } s.end() }
    pump()
  })
  const port = await listen(server, '127.0.4.5')
  t.teardown(() => server.close())
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('slow', '127.50.0.12', 80, [{ ip: '127.0.4.5', port }]))
  const addr = p.address('default/slow', 80)
  const s: Socket = connect(addr.port, addr.address)
  s.pause()
  await sleep(500)
  // Socket buffers at each hop hold a few MB at most; without backpressure the whole 200 MB would be read.
  t.ok(written < 32 * 1024 * 1024, `backend could write only ${(written / 1048576).toFixed(1)} MB while the client did not read`)
  s.destroy()
})

t.test('reconcile: an established connection survives an endpoint change and an unrelated service change', async (t) => {
  const { port } = await echoServer(t, '127.0.5.1')
  const other = await nameServer(t, 'other', '127.0.5.2')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('keep', '127.50.0.13', 80, [{ ip: '127.0.5.1', port }]))
  const addr = p.address('default/keep', 80)
  const s = connect(addr.port, addr.address)
  await once(s, 'connect')
  s.write('one')
  t.equal(((await once(s, 'data')) as [Buffer])[0].toString(), 'one')
  // Add a second endpoint and another service: the listener and the connection stay.
  await p.apply(svcWithEndpoints('keep', '127.50.0.13', 80, [{ ip: '127.0.5.1', port }, { ip: '127.0.5.2', port: other.port }]))
  await p.apply(svcWithEndpoints('unrelated', '127.50.0.14', 80, [{ ip: '127.0.5.2', port: other.port }]))
  t.equal(p.address('default/keep', 80).port, addr.port, 'same listener')
  s.write('two')
  t.equal(((await once(s, 'data')) as [Buffer])[0].toString(), 'two', 'connection still works')
  // Port change: the old listener goes, the new one serves; the established connection stays.
  await p.apply(svcWithEndpoints('keep', '127.50.0.13', 81, [{ ip: '127.0.5.1', port }]))
  s.write('three')
  t.equal(((await once(s, 'data')) as [Buffer])[0].toString(), 'three', 'connection survives the rebind')
  const fresh = await fetchAll(p.address('default/keep', 81).address, p.address('default/keep', 81).port, 'new')
  t.equal(fresh, 'new')
  // Service deleted: new connections are refused.
  await p.delete('Service default/keep')
  const refused = await fetchAll(addr.address, addr.port)
  t.match(refused, /^ERR:ECONNREFUSED/)
  s.destroy()
})

t.test('validation errors reject the whole apply and change nothing', async (t) => {
  const { port } = await echoServer(t, '127.0.5.3')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('ok', '127.50.0.15', 80, [{ ip: '127.0.5.3', port }]))
  const before = JSON.stringify(p.status())
  const bad = [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'fine', namespace: 'default' }, spec: { ports: [{ port: 80 }], selector: { a: 'b' } } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'broken', namespace: 'default' }, spec: { ports: [{ name: 'a', port: 80 }, { name: 'b', port: 81, targetPort: -1 }] } },
  ]
  const err = await p.apply(bad).then(() => null, (e: unknown) => e)
  t.type(err, ValidationError)
  t.equal((err as ValidationError).code, 'SVCPROXY_INVALID')
  t.match((err as ValidationError).issues[0], { object: 'Service default/broken', path: 'spec.ports[1].targetPort' })
  t.equal(JSON.stringify(p.status()), before, 'nothing of the document was applied')
  // A clusterIP taken by another service is a conflict, also atomic.
  const clash = await p.apply(svcWithEndpoints('clash', '127.50.0.15', 80, [])).then(() => null, (e: unknown) => e)
  t.match((clash as ValidationError).issues[0], { object: 'Service default/clash', path: 'spec.clusterIP' })
  t.equal(JSON.stringify(p.status()), before)
})

t.test('headless and ExternalName services get no listener', async (t) => {
  const p = testProxy(t)
  await p.apply([
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'headless' }, spec: { clusterIP: 'None', selector: { a: 'b' }, ports: [{ port: 80 }] } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'ext' }, spec: { type: 'ExternalName', externalName: 'db.example.com' } },
  ])
  t.equal(p.dataplane.frontends.size, 0)
  t.throws(() => p.address('default/headless', 80), { code: 'SVCPROXY_NOT_FOUND' })
})

t.test('a clusterIP that cannot bind is reported; other services serve; retried on the next change', async (t) => {
  const { port } = await echoServer(t, '127.0.5.4')
  const p = testProxy(t)
  await p.apply([
    ...svcWithEndpoints('remote', '10.96.0.10', 80, [{ ip: '127.0.5.4', port }]),
    ...svcWithEndpoints('local', '127.50.0.16', 80, [{ ip: '127.0.5.4', port }]),
  ])
  const st = p.status()
  const remote = st.find((s) => s.name === 'remote')
  t.equal(remote?.frontends[0]?.state, 'error')
  t.match(remote?.frontends[0]?.error, /EADDRNOTAVAIL/)
  const local = p.address('default/local', 80)
  t.equal(await fetchAll(local.address, local.port, 'x'), 'x')
})

t.test('clusterIP allocation is deterministic and stable', async (t) => {
  const mk = (): unknown[] => [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'one' }, spec: { ports: [{ port: 80 }] } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'two' }, spec: { ports: [{ port: 80 }] } },
  ]
  const p1 = testProxy(t)
  const p2 = testProxy(t)
  await p1.apply(mk())
  await p2.apply(mk().reverse())
  const ips = (p: typeof p1): string[] => p.status().map((s) => s.clusterIP)
  t.same(ips(p1), ips(p2), 'same allocation whatever the order')
  t.match(ips(p1)[0], /^127\.96\./)
  t.not(ips(p1)[0], ips(p1)[1])
  await p1.apply(mk()) // re-apply without clusterIP keeps the allocation
  t.same(ips(p1), ips(p2))
})

t.test('close() leaves no handle open and refuses further writes', async (t) => {
  const { port } = await echoServer(t, '127.0.5.5')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('c', '127.50.0.17', 80, [{ ip: '127.0.5.5', port }]))
  const addr = p.address('default/c', 80)
  const s = connect(addr.port, addr.address)
  const closed = new Promise((resolve) => s.on('close', resolve))
  s.on('error', () => {})
  await once(s, 'connect')
  await p.close()
  await closed
  t.equal(p.dataplane.openCount(), 0)
  await t.rejects(p.apply([]), { code: 'SVCPROXY_CLOSED' })
})


t.test('a port that could not bind is retried on the next change and then serves', async (t) => {
  const { port: backendPort } = await echoServer(t, '127.0.5.6')
  // Something else holds the service's address:port.
  const blocker = createServer()
  const port = await listen(blocker, '127.50.0.31')
  const p = testProxy(t, { ephemeralPorts: false })
  await p.apply(svcWithEndpoints('late', '127.50.0.31', port, [{ ip: '127.0.5.6', port: backendPort }]))
  t.equal(p.status()[0]?.frontends[0]?.state, 'error')
  t.match(p.status()[0]?.frontends[0]?.error, /EADDRINUSE/)
  await new Promise((resolve) => blocker.close(resolve))
  // Any later change retries it.
  await p.apply(svcWithEndpoints('other', '127.50.0.32', port, [{ ip: '127.0.5.6', port: backendPort }]))
  t.equal(p.status().find((s) => s.name === 'late')?.frontends[0]?.state, 'listening')
  t.equal(await fetchAll('127.50.0.31', port, 'ping'), 'ping')
})

t.test('engine: uv unless node is asked for; anything else is refused', async (t) => {
  t.equal(testProxy(t, { engine: 'uv' }).engine, 'uv', 'Node 20 offers the libuv handles the uv engine needs')
  t.equal(testProxy(t, { engine: 'node' }).engine, 'node')
  t.throws(() => testProxy(t, { engine: 'fast' as 'uv' }), { code: 'SVCPROXY_CONFIG' })
})
