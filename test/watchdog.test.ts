// Issue 18, "Also": a watchdog on the event loop. /healthz answers 503 while the loop is blocked
// beyond --healthz-max-loop-delay, as kube-proxy's turns 503 when updates stop being applied.
// In process, the test itself blocks the loop (a busy wait) with a probe queued behind it; for the
// daemon, SIGSTOP stalls the whole process (its loop does not turn) while the kernel still takes
// the probe's connection and bytes, and SIGCONT lets the loop answer them.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { createAdminServer } from '../lib/index.js'
import { LoopWatchdog, healthz } from '../lib/admin/health.js'
import { apiHealth } from '../lib/sources/health.js'
import { cliCommand, listen, svcWithEndpoints, testProxy, until, httpGet, captureLogger } from './helpers.js'

const root = new URL('..', import.meta.url).pathname
/** Holds this thread (and so its event loop) for `ms`. */
function busyWait (ms: number): void {
  const end = performance.now() + ms
  while (performance.now() < end) { /* the loop is blocked */ }
}
/**
 * Sends `GET /healthz` on a connected socket, then blocks the loop for `blockMs` before anything
 * can read it: the probe waits behind the block. Resolves with the HTTP status line's code.
 */
async function probeBehindBlock (url: string, blockMs: number): Promise<number> {
  const { hostname, port } = new URL(url)
  const s = connect({ host: hostname, port: Number(port) })
  await once(s, 'connect')
  let text = ''
  s.on('data', (d: Buffer) => { text += d.toString() })
  const ended = once(s, 'end')
  s.write('GET /healthz HTTP/1.1\r\nHost: svcproxy\r\nConnection: close\r\n\r\n') // reaches the kernel now
  busyWait(blockMs)
  await ended
  s.destroy()
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)
}

const blockedMsg = 'event loop was blocked beyond --healthz-max-loop-delay: /healthz answers 503'

t.test('LoopWatchdog: blocked during and right after a block over the limit, not otherwise', async (t) => {
  const { logger, lines } = captureLogger()
  const w = new LoopWatchdog(300, logger)
  t.teardown(() => w.close())
  t.notOk(w.blocked(), 'an idle loop is not blocked')
  busyWait(50)
  t.notOk(w.blocked(), 'a delay under the limit is not a block')
  busyWait(500)
  t.ok(w.blocked(), 'the block in progress counts before the timer has run')
  t.ok(w.delayMs() >= 450, 'the delay so far: 550 ms since the timer was due in 100')
  t.same(healthz(apiHealth(1, Date.now()), Date.now(), w.blocked()).status, 503)
  t.ok(await until(() => !w.blocked(), 5000), 'healthy again once the loop runs')
  t.equal(lines.filter((l) => l.msg === blockedMsg).length, 1, 'logged once for the block')
  t.same(healthz(apiHealth(1, Date.now()), Date.now(), w.blocked()).status, 200)
})

t.test('/healthz: a probe queued behind a blocked loop gets 503; /readyz and the next probes are not affected', async (t) => {
  const p = testProxy(t)
  const { logger, lines } = captureLogger()
  const admin = await createAdminServer({ proxy: p, healthzBindAddress: '127.0.0.1:0', maxLoopDelayMs: 1000, logger })
  t.teardown(() => admin.close())
  const base = admin.healthzUrl ?? ''
  t.equal((await httpGet(`${base}/healthz`)).status, 200, 'healthy before')
  t.equal(await probeBehindBlock(base, 1500), 503, 'the probe that waited behind a 1.5 s block (limit 1 s): 503')
  t.equal((await httpGet(`${base}/readyz`)).status, 200, '/readyz does not follow the loop')
  t.ok(await until(async () => (await httpGet(`${base}/healthz`)).status === 200, 5000), '200 again once the loop has run normally')
  t.equal(lines.filter((l) => l.msg === blockedMsg).length, 1, 'logged once')
  t.equal(await probeBehindBlock(base, 50), 200, 'a 50 ms block, well under the limit, is no failure')
})

t.test('maxLoopDelayMs 0 turns the watchdog off', async (t) => {
  const p = testProxy(t)
  const admin = await createAdminServer({ proxy: p, healthzBindAddress: '127.0.0.1:0', maxLoopDelayMs: 0 })
  t.teardown(() => admin.close())
  t.equal(await probeBehindBlock(admin.healthzUrl ?? '', 600), 200)
  await t.rejects(createAdminServer({ proxy: p, healthzBindAddress: '127.0.0.1:0', maxLoopDelayMs: -1 }), { code: 'SVCPROXY_CONFIG' })
})

t.test('the daemon: --healthz-max-loop-delay; a probe that waited for a stalled process gets 503', async (t) => {
  const ip = '127.119.0.1'
  const free = createServer()
  const port = await listen(free, ip)
  free.close()
  await once(free, 'close')
  const dir = await mkdtemp(join(tmpdir(), 'svcproxy-watchdog-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'services.json')
  await writeFile(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: svcWithEndpoints('web', ip, port, [{ ip: '127.0.119.1', port: 9 }]) }))
  const child = spawn(...cliCommand('run', '--config', file, '--healthz-bind-address', '127.0.0.1:0', '--metrics-bind-address', '', '--healthz-max-loop-delay', '500ms'), { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) { child.kill('SIGCONT'); child.kill('SIGKILL') } })
  let out = ''
  let err = ''
  child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { err += d.toString() })
  t.ok(await until(() => /healthz on http/.test(err) || child.exitCode !== null, 30_000), 'started')
  const base = /healthz on (http:\/\/\S+)\/healthz/.exec(err)?.[1] ?? ''
  t.equal((await httpGet(`${base}/healthz`)).status, 200, 'healthy before')

  child.kill('SIGSTOP')
  const probe = httpGet(`${base}/healthz`) // accepted by the kernel, answered after SIGCONT
  // The length of the injected stall (the fault itself, not a wait for something to happen).
  await new Promise((resolve) => setTimeout(resolve, 1500))
  child.kill('SIGCONT')
  t.equal((await probe).status, 503, 'the probe that waited for the stalled loop: 503')
  t.ok(await until(async () => (await httpGet(`${base}/healthz`)).status === 200, 5000), '200 again once the loop runs')
  t.equal(out.split('\n').filter((l) => l.includes(blockedMsg)).length, 1, 'the daemon logged the block once')
  child.kill('SIGTERM')
  const [code] = await once(child, 'exit') as [number | null]
  t.equal(code, 0)
})
