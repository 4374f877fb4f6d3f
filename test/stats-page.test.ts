// The stats page (GET / on the metrics address), driven in a real browser: headless Chromium
// (Debian's `chromium`) over the DevTools protocol on --remote-debugging-pipe (fd 3: commands
// in, fd 4: answers and events out, each message JSON ended by a NUL byte), node built-ins only.
// The daemon is the CLI (`svcproxy run --config FILE`), serving two services.

import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { createSocket } from 'node:dgram'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import type { Readable, Writable } from 'node:stream'
import { cliCommand, echoServer, udpServer, UdpClient } from './helpers.js'

type Teardown = { teardown: (fn: () => unknown) => void, comment: (...msg: unknown[]) => void }
type Json = Record<string, unknown>

/** Debian's chromium (/usr/bin/chromium), or one on PATH. */
function findChromium (): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/bin']
  for (const dir of dirs) {
    for (const name of ['chromium', 'chromium-browser']) {
      try {
        accessSync(join(dir, name), constants.X_OK)
        return join(dir, name)
      } catch {}
    }
  }
  return null
}

/** The DevTools protocol over the pipe pair: numbered commands, their answers, and events. */
class Cdp {
  private seq = 0
  private buf = Buffer.alloc(0)
  private readonly pending = new Map<number, { resolve: (r: Json) => void, reject: (e: Error) => void, method: string }>()
  private readonly waiters: Array<{ method: string, resolve: (p: Json) => void }> = []
  private closed = false

  constructor (private readonly toBrowser: Writable, fromBrowser: Readable) {
    // A browser that goes away answers nothing more: every command waiting fails instead of hanging.
    fromBrowser.on('close', () => {
      this.closed = true
      for (const [, p] of this.pending) p.reject(new Error(`${p.method}: the browser closed the pipe`))
      this.pending.clear()
    })
    fromBrowser.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk])
      for (let end = this.buf.indexOf(0); end >= 0; end = this.buf.indexOf(0)) {
        const msg = JSON.parse(this.buf.subarray(0, end).toString('utf8')) as { id?: number, method?: string, params?: Json, result?: Json, error?: { message: string } }
        this.buf = this.buf.subarray(end + 1)
        if (msg.id !== undefined) {
          const p = this.pending.get(msg.id)
          this.pending.delete(msg.id)
          if (msg.error !== undefined) p?.reject(new Error(`${p.method}: ${msg.error.message}`))
          else p?.resolve(msg.result ?? {})
        } else if (msg.method !== undefined) {
          for (const w of this.waiters.splice(0)) {
            if (w.method === msg.method) w.resolve(msg.params ?? {})
            else this.waiters.push(w)
          }
        }
      }
    })
  }

  send (method: string, params: Json = {}, sessionId?: string): Promise<Json> {
    const id = ++this.seq
    return new Promise((resolve, reject) => {
      if (this.closed) { reject(new Error(`${method}: the browser closed the pipe`)); return }
      this.pending.set(id, { resolve, reject, method })
      this.toBrowser.write(`${JSON.stringify({ id, method, params, ...(sessionId === undefined ? {} : { sessionId }) })}\0`)
    })
  }

  /** The next event named `method` (register before causing it). */
  event (method: string): Promise<Json> {
    return new Promise((resolve) => this.waiters.push({ method, resolve }))
  }
}

interface Browser { cdp: Cdp, session: string, child: ChildProcess }

async function launchChromium (t: Teardown, bin: string, dir: string): Promise<Browser> {
  const child = spawn(bin, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--user-data-dir=${join(dir, 'profile')}`, '--remote-debugging-pipe', 'about:blank',
  ], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => { stderr = (stderr + c.toString()).slice(-4000) })
  const exited = once(child, 'exit')
  // The profile is removed once the browser is gone (it writes there until it exits).
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
    if (process.env.SVCPROXY_KEEP_ARTIFACTS === undefined) rmSync(join(dir, 'profile'), { recursive: true, force: true, maxRetries: 3 })
  })
  const cdp = new Cdp(child.stdio[3] as Writable, child.stdio[4] as Readable)
  const version = await Promise.race([cdp.send('Browser.getVersion'), exited.then(() => { throw new Error(`chromium exited at start:\n${stderr}`) })])
  t.comment(`browser: ${String(version.product)}`)
  const { targetId } = await cdp.send('Target.createTarget', { url: 'about:blank' }) as { targetId: string }
  const { sessionId } = await cdp.send('Target.attachToTarget', { targetId, flatten: true }) as { sessionId: string }
  await cdp.send('Page.enable', {}, sessionId)
  await cdp.send('Emulation.setDeviceMetricsOverride', { width: 1600, height: 560, deviceScaleFactor: 1, mobile: false }, sessionId)
  return { cdp, session: sessionId, child }
}

async function evaluate<T> (b: Browser, expression: string): Promise<T> {
  const r = await b.cdp.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }, b.session) as { result: { value: T }, exceptionDetails?: { text: string } }
  if (r.exceptionDetails !== undefined) throw new Error(`page: ${r.exceptionDetails.text}`)
  return r.result.value
}

async function screenshot (b: Browser, file: string): Promise<void> {
  const { data } = await b.cdp.send('Page.captureScreenshot', { format: 'png' }, b.session) as { data: string }
  writeFileSync(file, Buffer.from(data, 'base64'))
}

/** What the page shows, per service block: hidden or not, endpoint rows, port-row and endpoint-row cells by column. */
interface Shown { hidden: boolean, eps: string[], port: Record<string, string>, ep: Record<string, Record<string, string>> }
const READ_PAGE = `(() => {
  // A block's rows are built when it is first seen: until then it has none.
  const cells = (tr) => tr === null ? {} : Object.fromEntries([...tr.querySelectorAll('td[data-k]')].map((td) => [td.dataset.k, td.textContent]))
  const out = {}
  for (const s of document.querySelectorAll('section.svc')) {
    const eps = [...s.querySelectorAll('tr.ep')]
    out[s.dataset.svc] = {
      hidden: s.hidden || s.offsetParent === null,
      eps: eps.map((tr) => tr.dataset.ep),
      port: cells(s.querySelector('tr.port')),
      ep: Object.fromEntries(eps.map((tr) => [tr.dataset.ep, cells(tr)])),
    }
  }
  return out
})()`

/** Polls the page until `ok` holds or `ms` pass; resolves with the last view either way. */
async function pageUntil (b: Browser, ok: (v: Record<string, Shown>) => boolean, ms: number): Promise<{ view: Record<string, Shown>, held: boolean, after: number }> {
  const start = Date.now()
  for (;;) {
    const view = await evaluate<Record<string, Shown>>(b, READ_PAGE)
    if (ok(view)) return { view, held: true, after: Date.now() - start }
    if (Date.now() - start > ms) return { view, held: false, after: Date.now() - start }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

function manifest (web: Array<{ ip: string, port: number, pod: string }>, dns: { ip: string, port: number }): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '127.62.0.1', externalIPs: ['127.62.0.9'], ports: [{ name: 'http', port: 18080 }] } },
      {
        apiVersion: 'v1',
        kind: 'Endpoints',
        metadata: { name: 'web', namespace: 'shop' },
        subsets: web.map((e) => ({ addresses: [{ ip: e.ip, nodeName: 'node-a', targetRef: { kind: 'Pod', name: e.pod } }], ports: [{ name: 'http', port: e.port }] })),
      },
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'dns', namespace: 'kube-system' }, spec: { clusterIP: '127.62.0.2', ports: [{ name: 'dns', port: 15353, protocol: 'UDP' }] } },
      { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'dns', namespace: 'kube-system' }, subsets: [{ addresses: [{ ip: dns.ip, nodeName: 'node-b' }], ports: [{ name: 'dns', port: dns.port, protocol: 'UDP' }] }] },
    ],
  })
}

/** `svcproxy run` with the metrics server on a free port; resolves with its URL once it serves. */
async function startDaemon (t: Teardown, config: string): Promise<{ child: ChildProcess, url: string }> {
  const [node, args] = cliCommand('run', '--config', config, '--metrics-bind-address', '127.0.0.1:0', '--healthz-bind-address', '', '--log-level', 'warn')
  const child = spawn(node, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr?.on('data', (c: Buffer) => { out += c.toString() })
  const exited = once(child, 'exit')
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  while (!out.includes('svcproxy: serving') && child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 20))
  const m = /svcproxy: metrics on (http:\/\/\S+)\/metrics/.exec(out)
  if (m?.[1] === undefined || child.exitCode !== null) throw new Error(`daemon did not start:\n${out}`)
  return { child, url: m[1] }
}

t.test('the stats page lists services and endpoints, shows a connection live, follows the manifest and filters', async (t) => {
  const bin = findChromium()
  if (bin === null) {
    t.fail('chromium not found: this test drives Debian\'s chromium (apt-get install -y chromium; .ci/run installs it)')
    return
  }
  const dir = mkdtempSync(join(tmpdir(), 'svcproxy-stats-page-'))
  const a = await echoServer(t, '127.0.62.1')
  const b = await echoServer(t, '127.0.62.2')
  const dns = await udpServer(t, 'dns', '127.0.62.3')
  const web = [{ ip: '127.0.62.1', port: a.port, pod: 'web-7d4b9-abcde' }, { ip: '127.0.62.2', port: b.port, pod: 'web-7d4b9-fghij' }]
  const config = join(dir, 'services.json')
  writeFileSync(config, manifest(web, { ip: '127.0.62.3', port: dns.port }))
  const daemon = await startDaemon(t, config)
  const browser = await launchChromium(t, bin, dir)

  const loaded = browser.cdp.event('Page.loadEventFired')
  await browser.cdp.send('Page.navigate', { url: `${daemon.url}/` }, browser.session)
  await loaded
  const epA = `127.0.62.1:${a.port}`
  const epB = `127.0.62.2:${b.port}`
  const epDns = `127.0.62.3:${dns.port}`
  const listed = await pageUntil(browser, (v) => v['shop/web']?.eps.join() === `${epA},${epB}` && v['kube-system/dns']?.eps.join() === epDns, 10000)
  t.ok(listed.held, 'both services and their endpoints are listed')
  t.same(Object.keys(listed.view).sort(), ['kube-system/dns', 'shop/web'])
  t.same(await evaluate<string[]>(browser, '[...document.querySelectorAll(\'section[data-svc="shop/web"] tr.fe td[data-k=what]\')].map((td) => td.textContent)'),
    ['clusterIP 127.62.0.1:18080', 'externalIP 127.62.0.9:18080'], 'one row per frontend, with its kind and address')
  t.match(await evaluate<string>(browser, 'document.querySelector(\'section[data-svc="shop/web"] tr.port td[data-k=state]\').textContent'), /UP$/, 'state told by text')

  // A UDP session and a held TCP connection with 1000 bytes echoed.
  const udp = new UdpClient(createSocket('udp4'))
  udp.sock.bind(0, '127.0.0.1')
  await once(udp.sock, 'listening')
  t.teardown(() => udp.sock.close())
  udp.send('q', 15353, '127.62.0.2')
  t.equal((await udp.recv(5000))?.data.toString(), 'dns:q', 'the UDP service answers')
  const held: Socket = connect({ host: '127.62.0.1', port: 18080 })
  t.teardown(() => held.destroy())
  let echoed = 0
  held.on('data', (c: Buffer) => { echoed += c.length })
  held.on('error', () => {})
  await once(held, 'connect')
  held.write('x'.repeat(1000))
  while (echoed < 1000) await new Promise((resolve) => setTimeout(resolve, 5))
  const shown = await pageUntil(browser, (v) => {
    const p = v['shop/web']?.port
    return p?.active === '1' && p.bytesUp === '1000 B' && p.bytesDown === '1000 B' && Object.values(v['shop/web']?.ep ?? {}).some((e) => e.active === '1' && e.bytesUp === '1000 B')
  }, 2000)
  t.ok(shown.held, `the connection shows in the active count and the byte counters within two seconds (after ${shown.after} ms)`)
  t.comment(`connection on the page after ${shown.after} ms`)
  const rated = await pageUntil(browser, (v) => v['shop/web']?.port.bytesUpPerSec !== '0 B/s', 5000)
  t.ok(rated.held, `the bytes show as a rate too (${rated.view['shop/web']?.port.bytesUpPerSec ?? '?'})`)
  const udpShown = await pageUntil(browser, (v) => v['kube-system/dns']?.port.active === '1', 5000)
  t.ok(udpShown.held, 'the UDP session shows in the active count')

  const png = join(dir, 'stats-page.png')
  await screenshot(browser, png)
  t.comment(`screenshot: ${png}`)
  process.stdout.write(`# stats page screenshot: ${png}\n`)

  // Dark colours follow the system's preference.
  const bg = 'getComputedStyle(document.body).backgroundColor'
  const light = await evaluate<string>(browser, bg)
  await browser.cdp.send('Emulation.setEmulatedMedia', { features: [{ name: 'prefers-color-scheme', value: 'dark' }] }, browser.session)
  const dark = await evaluate<string>(browser, bg)
  t.not(dark, light, `prefers-color-scheme: dark changes the colours (${light} -> ${dark})`)
  await screenshot(browser, join(dir, 'stats-page-dark.png'))
  await browser.cdp.send('Emulation.setEmulatedMedia', { features: [{ name: 'prefers-color-scheme', value: 'light' }] }, browser.session)

  // An endpoint removed from the manifest leaves the page.
  writeFileSync(config, manifest(web.slice(0, 1), { ip: '127.0.62.3', port: dns.port }))
  daemon.child.kill('SIGHUP')
  const removed = await pageUntil(browser, (v) => v['shop/web']?.eps.join() === epA, 10000)
  t.ok(removed.held, `the removed endpoint disappears (shown: ${removed.view['shop/web']?.eps.join() ?? '?'})`)

  // The filter: typed as a person types it.
  const typeFilter = async (text: string): Promise<void> => {
    await evaluate(browser, 'document.getElementById(\'filter\').select()')
    await browser.cdp.send('Input.insertText', { text }, browser.session)
  }
  await evaluate(browser, 'document.getElementById(\'filter\').focus()')
  await typeFilter('shop')
  const byNs = await pageUntil(browser, (v) => v['kube-system/dns']?.hidden === true && v['shop/web']?.hidden === false, 5000)
  t.ok(byNs.held, 'filtering by namespace hides the other service')
  await typeFilter('dns')
  const byName = await pageUntil(browser, (v) => v['shop/web']?.hidden === true && v['kube-system/dns']?.hidden === false, 5000)
  t.ok(byName.held, 'filtering by name hides the other service')
  t.equal(await evaluate<string>(browser, 'document.getElementById(\'shown\').textContent'), '1 of 2 services')

  // Browser.close may end the browser before it answers: the exit is the answer.
  await Promise.race([browser.cdp.send('Browser.close').catch(() => {}), once(browser.child, 'exit')])
})
