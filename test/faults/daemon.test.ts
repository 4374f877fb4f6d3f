// Fault suite (issue #8): the daemon process itself. SIGKILL and restart; running out of
// file descriptors (kube-proxy panicked on EMFILE).
import type { Socket } from 'node:net'
import t from 'tap'
import { echoServer, svcWithEndpoints } from '../helpers.js'
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
