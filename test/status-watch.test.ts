// /v1/stats (the stats page's JSON), GET / (the page), the rate window, and
// `svcproxy status --watch` spawned as an operator runs it.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect, createServer, type Socket } from 'node:net'
import t from 'tap'
import { createAdminServer } from '../lib/index.js'
import { MIN_WINDOW_MS, RateWindow } from '../lib/admin/rates.js'
import type { StatsDoc } from '../lib/admin/stats.js'
import { STATS_PAGE } from '../lib/admin/stats-page.js'
import { frame, renderWatch } from '../lib/cli/status-watch.js'
import { cliCommand, echoServer, listen, svcWithEndpoints, testProxy } from './helpers.js'

async function held (host: string, port: number, payload: string): Promise<Socket> {
  const s = connect({ host, port })
  let got = 0
  s.on('data', (c: Buffer) => { got += c.length })
  s.write(payload)
  while (got < payload.length) await new Promise((resolve) => setTimeout(resolve, 5))
  return s
}

t.test('rate window: per-second deltas over windows of at least MIN_WINDOW_MS, shared by every caller', async (t) => {
  let now = 10_000
  const w = new RateWindow(() => now)
  const c = { accepted: 5, bytesUp: 1000, bytesDown: 50 }
  const read = (key: string): { connPerSec: number, bytesUpPerSec: number, bytesDownPerSec: number } => {
    const r = w.rate(key, c)
    return { connPerSec: r.connPerSec, bytesUpPerSec: r.bytesUpPerSec, bytesDownPerSec: r.bytesDownPerSec }
  }
  w.begin()
  t.same(read('a'), { connPerSec: 0, bytesUpPerSec: 0, bytesDownPerSec: 0 }, 'the first request only opens a window')
  w.end()
  now += 2000
  c.accepted += 4
  c.bytesUp += 3000
  w.begin()
  t.same(read('a'), { connPerSec: 2, bytesUpPerSec: 1500, bytesDownPerSec: 0 }, 'deltas over the 2 s window')
  t.same(read('new'), { connPerSec: 4.5, bytesUpPerSec: 2000, bytesDownPerSec: 25 }, 'a series first seen now counted from zero')
  w.end()
  t.equal(w.lastWindowMs, 2000)
  now += MIN_WINDOW_MS - 1
  c.bytesUp += 999_999
  w.begin()
  t.equal(read('a').bytesUpPerSec, 1500, 'a second caller inside the window sees the same rates')
  w.end()
  now += 1
  c.bytesUp = 10 // a new object under the same key: its counter started again
  w.begin()
  t.equal(read('a').bytesUpPerSec, Math.round(10 / (MIN_WINDOW_MS / 1000) * 1000) / 1000, 'a counter that went back counts from zero')
  w.end()
  now += 1000
  w.begin()
  read('a')
  w.end()
  now += 1000
  w.begin()
  t.same(read('new'), { connPerSec: 9, bytesUpPerSec: 10, bytesDownPerSec: 50 }, 'a series gone for a window is forgotten: back, it is new (counted from zero)')
  w.end()
})

t.test('/v1/stats: /v1/services plus state, every per-port counter, rates and the source; / is the page', async (t) => {
  const echo = await echoServer(t, '127.0.63.1')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('w', '127.63.0.1', 80, [{ ip: '127.0.63.1', port: echo.port }]))
  await p.apply(svcWithEndpoints('empty', '127.63.0.2', 80, []))
  const admin = await createAdminServer({ proxy: p, metricsBindAddress: '127.0.0.1:0' })
  t.teardown(() => admin.close())
  const base = admin.metricsUrl ?? ''
  const stats = async (): Promise<StatsDoc> => await (await fetch(`${base}/v1/stats`)).json() as StatsDoc
  const first = await stats()
  t.equal(first.windowMs, 0, 'no window closed yet')
  const addr = p.address('default/w', 80)
  const s = await held(addr.address, addr.port, 'x'.repeat(500))
  t.teardown(() => s.destroy())
  // A window is a length of time: ask until one has closed (each answer before that says windowMs 0).
  let doc = await stats()
  while (doc.windowMs === 0) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    doc = await stats()
  }
  t.ok(doc.windowMs >= MIN_WINDOW_MS, `a window closed (${doc.windowMs} ms)`)
  t.match(doc.source, { kind: 'api', synced: true, stale: false, reason: '', syncErrors: 0 })
  t.ok(doc.source.lagMs >= 0)
  const w = doc.services.find((x) => x.name === 'w')
  const v1 = await (await fetch(`${base}/v1/services`)).json() as { services: Array<Record<string, unknown>> }
  t.match(w, { ...v1.services.find((x) => x.name === 'w'), endpoints: [] }, 'every /v1/services field, same values')
  t.match(w, { state: 'up', active: 1, accepted: 1, bytesUp: 500, bytesDown: 500, udpSessions: 0, rejected: 0, noEndpoints: 0 })
  t.ok((w?.bytesUpPerSec ?? 0) > 0 && (w?.connPerSec ?? 0) > 0, `rates over the window (${w?.bytesUpPerSec ?? 0} B/s up)`)
  t.ok((w?.endpointsChangedAt ?? 0) > 0 && (w?.endpointsChangedAt ?? 0) <= doc.time, 'when the endpoint set last changed')
  t.match(w?.endpoints, [{ endpoint: `127.0.63.1:${echo.port}`, state: 'ready', active: 1, bytesUp: 500 }])
  t.match(doc.services.find((x) => x.name === 'empty'), { state: 'no-endpoints', endpoints: [] })
  t.match(doc.totals, { servicePorts: 2, active: 1 })

  const changedAt = w?.endpointsChangedAt ?? 0
  await p.apply(svcWithEndpoints('w', '127.63.0.1', 80, [{ ip: '127.0.63.1', port: echo.port }], { annotations: { unrelated: 'yes' } }))
  t.equal((await stats()).services.find((x) => x.name === 'w')?.endpointsChangedAt, changedAt, 'a write that leaves the endpoints alone does not move it')

  const page = await fetch(`${base}/`)
  t.equal(page.status, 200)
  t.equal(page.headers.get('content-type'), 'text/html; charset=utf-8')
  t.match(page.headers.get('content-security-policy'), /default-src 'none'.*script-src 'sha256-/, 'only its own inline style and script')
  const html = await page.text()
  t.equal(html, STATS_PAGE)
  t.notMatch(html, /(src|href)=["']?(https?:)?\/\//, 'no external asset')
  t.ok(Buffer.byteLength(html) < 48 * 1024, `a few tens of KB (${(Buffer.byteLength(html) / 1024).toFixed(1)} KiB)`)
})

t.test('status --watch redraws in place until SIGINT; the frame fits the terminal', async (t) => {
  const echo = await echoServer(t, '127.0.63.2')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('watched', '127.63.0.3', 80, [{ ip: '127.0.63.2', port: echo.port }]))
  const admin = await createAdminServer({ proxy: p, metricsBindAddress: '127.0.0.1:0' })
  t.teardown(() => admin.close())
  const addr = p.address('default/watched', 80)
  const s = await held(addr.address, addr.port, 'hello')
  t.teardown(() => s.destroy())

  const [node, args] = cliCommand('status', '--watch', '--server', admin.metricsUrl ?? '')
  const child = spawn(node, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } })
  const exited = once(child, 'exit')
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let out = ''
  let errOut = ''
  child.stderr.on('data', (c: Buffer) => { errOut += c.toString() })
  // A frame is complete at "clear to end of screen"; two of them are two refreshes.
  const frames = (): string[] => out.split('\x1b[H').slice(1).filter((f) => f.includes('\x1b[J'))
  const started = Date.now()
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString()
      if (frames().length >= 2) resolve()
    })
    void exited.then(() => resolve())
  })
  t.comment(`two frames after ${Date.now() - started} ms`)
  t.ok(out.startsWith('\x1b[?25l\x1b[2J'), 'the cursor hidden and the screen cleared once')
  const [one, two] = frames()
  for (const f of [one, two]) {
    t.match(f, /^svcproxy status --watch {3}http:\/\/127\.0\.0\.1:\d+/, 'title line')
    t.match(f, /source api SYNCED · revision \d+/, 'the source\'s health')
    t.match(f, new RegExp(`default\\s+watched\\s+80\\s+TCP\\s+up\\s+127\\.63\\.0\\.3:${addr.port}\\s+1\\s`), 'the service port, its state and active count')
    t.match(f, new RegExp(`default/watched\\s+80\\s+127\\.0\\.63\\.2:${echo.port}\\s+ready\\s+1\\s`), 'the endpoint')
    t.notMatch(f, /\x1b\[3\dm/, 'NO_COLOR: no colour')
  }
  child.kill('SIGINT')
  const [code] = await exited
  t.equal(code, 0, 'Ctrl-C ends it with status 0')
  t.equal(errOut, '', 'nothing on stderr')
  t.ok(out.endsWith('\x1b[?25h\n'), 'the cursor is shown again')

  // In a terminal: colour, lines cut to its width and the frame to its height.
  const doc = await (await fetch(`${admin.metricsUrl ?? ''}/v1/stats`)).json() as StatsDoc
  const lines = renderWatch(doc, { base: 'http://x', error: 'cannot reach svcproxy', color: true })
  t.match(lines.join('\n'), /\x1b\[32mup\x1b\[0m/, 'state in colour, its word kept')
  t.match(lines.join('\n'), /cannot reach svcproxy; showing the last answer/, 'a failed poll is said on screen')
  const small = frame(lines, { write: () => true, isTTY: true, columns: 20, rows: 6 })
  const shown = small.slice(3, -3).split('\x1b[K\n')
  t.equal(shown.length, 5, 'rows - 1 lines')
  t.match(shown[4], /^… \d+ more lines/)
  t.ok(shown.every((l) => l.replace(/\x1b\[[0-9;]*m|\x1b\[K/g, '').length <= 20), 'no line wider than the terminal')
})

t.test('status --watch against nothing: one line, exit 1, as status', async (t) => {
  const probe = createServer()
  const port = await listen(probe, '127.0.0.1')
  probe.close() // a port nobody listens on (not 1: fetch refuses "bad ports" before dialling)
  await once(probe, 'close')
  const [node, args] = cliCommand('status', '--watch', '--server', `http://127.0.0.1:${port}`)
  const child = spawn(node, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  const [code] = await once(child, 'exit') as [number]
  t.equal(code, 1)
  t.match(err, `cannot reach svcproxy at http://127.0.0.1:${port}: ECONNREFUSED`)
})
