// Fault suite (issue #8): the daemon process itself. SIGKILL and restart; running out of
// file descriptors (kube-proxy panicked on EMFILE).
import { readdirSync } from 'node:fs'
import type { Socket } from 'node:net'
import t from 'tap'
import { echoServer, svcWithEndpoints, type UdpClient, udpClient, udpServer } from '../helpers.js'
import { connectHeld, echoOnce, fdCount, startDaemon, until, waitServing, writeConfig } from './fault-helpers.js'

t.test('daemon SIGKILLed and restarted: serves again from its config', async (t) => {
  const echo = await echoServer(t, '127.0.10.1')
  const config = writeConfig(svcWithEndpoints('restart', '127.53.0.1', 8080, [{ ip: '127.0.10.1', port: echo.port }]) as unknown[])
  const first = await startDaemon(t, config, ['--log-level', 'warn'])
  t.ok(await waitServing('127.53.0.1', 8080, 'ping'), 'first daemon serves')
  // A connection open at the time of the kill.
  const open = await connectHeld('127.53.0.1', 8080)
  t.ok(open !== null, 'a client is connected when the daemon dies')
  open?.on('error', () => {})
  const closed = open === null ? Promise.resolve() : new Promise<void>((resolve) => open.once('close', () => resolve()))
  first.child.kill('SIGKILL')
  t.equal(await first.exited, null, 'killed by the signal')
  await closed
  t.pass('the open client saw the connection end (the kernel closed it)')
  t.not(await echoOnce('127.53.0.1', 8080, 'x', 2000), 'x', 'nothing serves while the daemon is down')

  const second = await startDaemon(t, config, ['--log-level', 'warn'])
  t.ok(await waitServing('127.53.0.1', 8080, 'ping'), 'the restarted daemon serves the same config')
  t.equal(await echoOnce('127.53.0.1', 8080, 'again'), 'again')
  t.ok(second.pid !== first.pid)
})

t.test('out of file descriptors: no crash, logged once, serves again when descriptors free', async (t) => {
  const echo = await echoServer(t, '127.0.10.2')
  const config = writeConfig(svcWithEndpoints('emfile', '127.53.0.2', 8080, [{ ip: '127.0.10.2', port: echo.port }]) as unknown[])
  const LIMIT = 96
  const d = await startDaemon(t, config, ['--log-level', 'warn'], ['prlimit', `--nofile=${LIMIT}:${LIMIT}`])
  t.ok(await waitServing('127.53.0.2', 8080, 'ping'), 'daemon serves under a low descriptor limit')
  t.comment(`daemon starts with ${fdCount(d.pid)} descriptors, limit ${LIMIT}`)

  // Hold connections until the daemon has no descriptors left.
  const held: Socket[] = []
  t.teardown(() => { for (const s of held) s.destroy() })
  for (let i = 0; i < LIMIT; i++) {
    const s = await connectHeld('127.53.0.2', 8080)
    if (s === null) break
    s.on('error', () => {})
    held.push(s)
  }
  t.ok(await until(() => fdCount(d.pid) >= LIMIT - 1), `the daemon ran out (${fdCount(d.pid)} of ${LIMIT})`)
  // A burst of connections while exhausted: accepts fail with EMFILE.
  const burst = await Promise.all(Array.from({ length: 20 }, () => echoOnce('127.53.0.2', 8080, 'b', 5000)))
  t.ok(burst.every((r) => r !== 'b'), 'no connection is served while descriptors are exhausted')
  t.ok(burst.every((r) => r !== 'ERR:TIMEOUT'), 'and none hangs: each is closed or reset')
  t.equal(d.child.exitCode, null, 'the daemon is still running')
  const logged = (): number => d.output().split('\n').filter((l) => l.includes('accept failed: out of file descriptors')).length
  t.ok(await until(() => logged() >= 1, 5000), 'the episode was logged')
  t.equal(logged(), 1, 'exactly once, however many accepts failed')
  if (logged() !== 1) t.comment(d.output().slice(-3000))

  for (const s of held) s.destroy()
  held.length = 0
  t.ok(await waitServing('127.53.0.2', 8080, 'ping', 15000), 'serves again once descriptors are free')
  t.ok(await until(() => d.output().includes('file descriptors available again')), 'the end of the episode was logged')
  t.equal(d.child.exitCode, null, 'never exited')
})

/** The value of an unlabelled family in a /metrics scrape; NaN when absent. */
async function scrapeValue (metricsUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${metricsUrl}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? NaN : Number(line.slice(name.length + 1))
}

for (const engine of ['uv', 'node'] as const) {
  t.test(`out of file descriptors (${engine} engine): svcproxy_accept_errors_total counts each episode once; the log names the listener or leaves the service out`, async (t) => {
    const host = engine === 'uv' ? '127.53.0.3' : '127.53.0.4'
    const echo = await echoServer(t, engine === 'uv' ? '127.0.10.3' : '127.0.10.4')
    const config = writeConfig(svcWithEndpoints('emfile-count', host, 8080, [{ ip: engine === 'uv' ? '127.0.10.3' : '127.0.10.4', port: echo.port }]) as unknown[])
    const LIMIT = 96
    const d = await startDaemon(t, config, ['--log-level', 'warn', '--engine', engine, '--metrics-bind-address', '127.0.0.1:0'], ['prlimit', `--nofile=${LIMIT}:${LIMIT}`])
    const metrics = /metrics on (http:\/\/\S+)\/metrics/.exec(d.output())?.[1] ?? ''
    t.not(metrics, '', 'the metrics server listens')
    t.ok(await waitServing(host, 8080, 'ping'), 'serves under a low descriptor limit')
    t.equal(await scrapeValue(metrics, 'svcproxy_accept_errors_total'), 0, 'no accept error yet')
    t.ok(await scrapeValue(metrics, 'process_max_fds') === LIMIT, 'process_max_fds is the limit the daemon runs under')

    const episodeLines = (): string[] => d.output().split('\n').filter((l) => l.includes('accept failed: out of file descriptors'))
    const recoveries = (): number => d.output().split('\n').filter((l) => l.includes('file descriptors available again')).length
    const exhaust = async (): Promise<void> => {
      const held: Socket[] = []
      t.teardown(() => { for (const s of held) s.destroy() })
      for (let i = 0; i < LIMIT; i++) {
        const s = await connectHeld(host, 8080)
        if (s === null) break
        s.on('error', () => {})
        held.push(s)
      }
      t.ok(await until(() => fdCount(d.pid) >= LIMIT - 1), `the daemon ran out (${fdCount(d.pid)} of ${LIMIT})`)
      // Whether the last descriptor went to an accept or a dial, new connections now fail on the accept path.
      const burst = await Promise.all(Array.from({ length: 20 }, () => echoOnce(host, 8080, 'b', 5000)))
      t.ok(burst.every((r) => r !== 'b' && r !== 'ERR:TIMEOUT'), 'the burst is closed or reset, none served, none hangs')
      for (const s of held) s.destroy()
      t.ok(await waitServing(host, 8080, 'ping', 15000), 'serves again once descriptors are free')
    }

    await exhaust()
    t.ok(await until(() => episodeLines().length === 1 && recoveries() === 1, 10000), 'the episode began and ended, each logged once')
    t.equal(await scrapeValue(metrics, 'svcproxy_accept_errors_total'), 1, 'counted once, however many accepts and dials failed in it')

    await exhaust()
    t.ok(await until(() => episodeLines().length === 2 && recoveries() === 2, 10000), 'a second episode, logged once more')
    t.equal(await scrapeValue(metrics, 'svcproxy_accept_errors_total'), 2, 'and counted once more')

    for (const l of episodeLines()) {
      const rec = JSON.parse(l) as { service?: string, address?: string, noticed?: string, code?: string }
      t.not(rec.service, '', `never "service":"" (noticed by ${rec.noticed ?? '?'})`)
      if (rec.service !== undefined) t.equal(rec.service, 'default/emfile-count:8080', 'the service whose listener or dial failed')
      if (rec.noticed === 'accept') t.equal(rec.address, `${host}:8080`, 'and the listener\'s address')
      t.ok(['accept', 'dial', 'probe'].includes(rec.noticed ?? ''), 'says how the episode was noticed')
      t.ok(rec.code === 'EMFILE' || rec.code === 'ENFILE')
    }
    t.equal(d.child.exitCode, null, 'never exited')
  })
}

t.test('out of file descriptors, noticed by the probe: counted once while TCP listeners are open, the log line has no service', async (t) => {
  // UDP sessions (one socket each) use up the descriptors, so no TCP accept or dial reports
  // EMFILE first: the probe does (before the fix it logged "service":"" and counted nothing).
  const tcp = await echoServer(t, '127.0.10.6')
  const udp = await udpServer(t, '', '127.0.10.6')
  const config = writeConfig([
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'probe', namespace: 'default' }, spec: { clusterIP: '127.53.0.6', ports: [{ name: 'tcp', port: 8080 }, { name: 'udp', port: 5353, protocol: 'UDP' }] } },
    { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'probe', namespace: 'default' }, subsets: [{ addresses: [{ ip: '127.0.10.6' }], ports: [{ name: 'tcp', port: tcp.port }] }, { addresses: [{ ip: '127.0.10.6' }], ports: [{ name: 'udp', port: udp.port, protocol: 'UDP' }] }] },
  ])
  const LIMIT = 96
  const d = await startDaemon(t, config, ['--log-level', 'warn', '--udp-timeout', '5s', '--metrics-bind-address', '127.0.0.1:0'], ['prlimit', `--nofile=${LIMIT}:${LIMIT}`])
  const metrics = /metrics on (http:\/\/\S+)\/metrics/.exec(d.output())?.[1] ?? ''
  t.ok(await waitServing('127.53.0.6', 8080, 'ping'), 'serves TCP')

  // One session (one upstream socket in the daemon) per client, until the daemon has no descriptor
  // left; sessions live 5 s, long enough for the probe (once a second) to notice.
  // Descriptor numbers below the limit: a descriptor inherited above it (the test runner's pipe)
  // is listed in /proc but takes no slot.
  const slotsUsed = (): number => readdirSync(`/proc/${d.pid}/fd`).map(Number).filter((n) => n < LIMIT).length
  const clients: UdpClient[] = []
  for (let i = 0; i < 3 * LIMIT && slotsUsed() < LIMIT; i++) {
    const c = await udpClient(t, '127.0.0.1')
    clients.push(c)
    await c.request('x', 5353, '127.53.0.6', 2, 500) // answered while the daemon had a descriptor for the session
  }
  t.ok(await until(() => slotsUsed() >= LIMIT), `UDP sessions hold every descriptor (${slotsUsed()} of ${LIMIT})`)
  const episode = (): string[] => d.output().split('\n').filter((l) => l.includes('accept failed: out of file descriptors'))
  t.ok(await until(() => episode().length === 1, 5000), 'the probe noticed the episode (no accept or dial failed yet)')
  const rec = JSON.parse(episode()[0] ?? '{}') as Record<string, unknown>
  t.equal(rec.noticed, 'probe', JSON.stringify(rec))
  t.notOk('service' in rec, 'no "service" field: no listener reported it (never "service":"")')
  // TCP clients now: refused on the accept path (libuv closes them unreported, or a dial fails), within the same episode.
  const burst = await Promise.all(Array.from({ length: 10 }, () => echoOnce('127.53.0.6', 8080, 'b', 5000)))
  t.ok(burst.every((r) => r !== 'b' && r !== 'ERR:TIMEOUT'), 'TCP connections are closed unserved, none hangs')
  t.equal(episode().length, 1, 'still one episode')

  for (const c of clients) c.sock.close()
  t.ok(await until(() => d.output().includes('file descriptors available again'), 15000), 'the sessions timed out and the episode ended')
  t.ok(await waitServing('127.53.0.6', 8080, 'ping', 15000), 'serves again')
  t.equal(await scrapeValue(metrics, 'svcproxy_accept_errors_total'), 1, 'counted once: TCP listeners were open, so the accept path was out of descriptors')
})
