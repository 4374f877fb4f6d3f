import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { parseExposition, valueOf } from './exposition.js'
import { fetchAll, listen, svcWithEndpoints, until, cliCommand, runCli, httpGet, freePort } from './helpers.js'

const root = new URL('..', import.meta.url).pathname

interface T { teardown: (fn: () => unknown) => void }

interface Daemon { child: ChildProcess, stdout: () => string, stderr: () => string, metrics: string, healthz: string, exit: Promise<number | null> }

function cli (args: string[]): ChildProcess {
  return spawn(...cliCommand(...args), { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
}

async function runToEnd (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return await runCli(args)
}
/** A backend the test drives by hand: it sends only what the test tells it to. */
async function manualBackend (t: T, host: string): Promise<{ port: number, next: () => Promise<Socket>, server: Server }> {
  const waiting: Socket[] = []
  const server = createServer((s) => { s.on('error', () => {}); waiting.push(s) })
  const port = await listen(server, host)
  t.teardown(() => { for (const s of waiting) s.destroy(); server.close() })
  return {
    port,
    server,
    next: async () => {
      await until(() => waiting.length > 0)
      const s = waiting.shift()
      if (s === undefined) throw new Error('no backend connection')
      return s
    },
  }
}

/** Writes a one-service manifest and starts `svcproxy run` on it with ephemeral admin ports. */
async function startDaemon (t: T, clusterIP: string, port: number, backend: { ip: string, port: number }, extra: string[] = []): Promise<Daemon> {
  const dir = await mkdtemp(join(tmpdir(), 'svcproxy-life-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'services.json')
  await writeFile(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: svcWithEndpoints('web', clusterIP, port, [backend]) }))
  const child = cli(['run', '--config', file, '--healthz-bind-address', '127.0.0.1:0', '--metrics-bind-address', '127.0.0.1:0', '--access-log', ...extra])
  const exit = once(child, 'exit').then(([code]) => code as number | null)
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let out = ''
  let err = ''
  child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { err += d.toString() })
  const up = await until(() => err.includes('svcproxy: serving') || child.exitCode !== null, 30_000)
  if (!up || child.exitCode !== null) throw new Error(`daemon did not start: ${err}`)
  const metrics = /metrics on (http:\/\/\S+)\/metrics/.exec(err)?.[1] ?? ''
  const healthz = /healthz on (http:\/\/\S+)\/healthz/.exec(err)?.[1] ?? ''
  return { child, stdout: () => out, stderr: () => err, metrics, healthz, exit }
}

t.test('SIGTERM: new connections refused at once, the in-flight transfer completes, exit 0', async (t) => {
  const backend = await manualBackend(t, '127.0.8.1')
  const port = await freePort('127.79.0.1')
  const d = await startDaemon(t, '127.79.0.1', port, { ip: '127.0.8.1', port: backend.port }, ['--shutdown-grace', '60s'])

  const hz = await httpGet(`${d.healthz}/healthz`)
  t.equal(hz.status, 200)
  t.match(JSON.parse(hz.body), { lastUpdated: /^\d{4}-\d\d-\d\dT/, currentTime: /^\d{4}-\d\d-\d\dT/ })
  t.equal((await httpGet(`${d.metrics}/readyz`)).status, 200, 'ready after the first sync')

  const client = connect({ host: '127.79.0.1', port })
  let received = 0
  client.on('data', (c: Buffer) => { received += c.length })
  const clientClosed = once(client, 'close')
  client.write('GET')
  const up = await backend.next()
  up.write(Buffer.alloc(1000, 65))
  t.ok(await until(() => received === 1000), 'first half of the transfer arrived')

  // An operator's view of the live connection.
  const st = await runToEnd(['status', '--server', d.metrics])
  t.equal(st.code, 0, st.stderr)
  t.match(st.stdout, /^revision 1, 1 service port, 1 active connection$/m)
  t.match(st.stdout, new RegExp(`^default\\s+web\\s+${port}\\s+TCP\\s+ClusterIP\\s+127\\.79\\.0\\.1:${port}\\s+1/1\\s+1\\s+1\\s+0$`, 'm'))
  t.match(st.stdout, new RegExp(`^default/web\\s+${port}\\s+127\\.0\\.8\\.1:${backend.port}\\s+<none>\\s+true\\s+ok\\s+1\\s+1\\s+0$`, 'm'))
  const scrape = parseExposition((await httpGet(`${d.metrics}/metrics`)).body)
  t.equal(valueOf(scrape, 'svcproxy_connections_active', { namespace: 'default', service: 'web', port: String(port) }), 1)

  d.child.kill('SIGTERM')
  // /readyz turns 503 in the same tick the listeners are closed.
  t.ok(await until(async () => (await httpGet(`${d.metrics}/readyz`)).status === 503), 'not ready once draining')
  t.equal(await fetchAll('127.79.0.1', port), 'ERR:ECONNREFUSED', 'a new connection is refused')
  t.equal(d.child.exitCode, null, 'still draining while the transfer is open')

  up.end(Buffer.alloc(1000, 66))
  await clientClosed
  t.equal(received, 2000, 'the whole transfer arrived')
  t.equal(await d.exit, 0, 'exit 0 after the drain')
  const access = d.stdout().split('\n').filter((l) => l.includes('"log":"access"')).map((l) => JSON.parse(l) as Record<string, unknown>)
  t.equal(access.length, 1, 'one access-log line (the refused connection never reached the proxy)')
  t.match(access[0], { service: 'default/web', endpoint: `127.0.8.1:${backend.port}`, bytesIn: 3, bytesOut: 2000, reason: 'eof' })
})

t.test('a second signal exits at once, without waiting for the drain', async (t) => {
  const backend = await manualBackend(t, '127.0.8.2')
  const port = await freePort('127.79.0.2')
  const d = await startDaemon(t, '127.79.0.2', port, { ip: '127.0.8.2', port: backend.port }, ['--shutdown-grace', '10m'])
  const client = connect({ host: '127.79.0.2', port })
  client.on('error', () => {})
  const closed = once(client, 'close')
  client.write('x')
  const up = await backend.next()
  up.write('partial')
  await once(client, 'data')
  d.child.kill('SIGTERM')
  t.ok(await until(async () => (await httpGet(`${d.metrics}/readyz`)).status === 503), 'draining')
  d.child.kill('SIGINT')
  t.equal(await d.exit, 1, 'second signal: immediate exit, status 1')
  await closed
  t.pass('the open connection was cut')
})

t.test('startup failures: non-zero exit and one line on stderr', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svcproxy-life-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'ok.json')
  const port = await freePort('127.79.0.3')
  await writeFile(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: svcWithEndpoints('ok', '127.79.0.3', port, [{ ip: '127.0.8.3', port: 9 }]) }))
  const admin0 = ['--healthz-bind-address', '127.0.0.1:0', '--metrics-bind-address', '127.0.0.1:0']
  const blocker = createServer()
  const taken = await listen(blocker, '127.0.0.1')
  t.teardown(() => blocker.close())

  const cases: Array<[string, string[], RegExp]> = [
    ['bad flag', ['run', '--config', file, '--bogus'], /^svcproxy run: Unknown option '--bogus' \(see svcproxy run --help\)$/],
    ['bad admin address', ['run', '--config', file, '--healthz-bind-address', 'nowhere'], /^svcproxy run: --healthz-bind-address: expected IP:PORT/],
    ['unreadable file', ['run', '--config', join(dir, 'missing.json'), ...admin0], /^svcproxy run: .*missing\.json/],
    ['admin port in use', ['run', '--config', file, '--healthz-bind-address', '127.0.0.1:0', '--metrics-bind-address', `127.0.0.1:${taken}`], new RegExp(`^svcproxy run: metrics: cannot listen on 127\\.0\\.0\\.1:${taken} \\(--metrics-bind-address\\): address already in use \\(EADDRINUSE\\)$`)],
    ['status without a daemon', ['status', '--server', `http://127.0.0.1:${await freePort('127.0.0.1')}`], /^svcproxy status: cannot reach svcproxy at .*ECONNREFUSED/],
  ]
  // In parallel: each spawn pays the TypeScript loader's start-up.
  const runs = await Promise.all(cases.map(async ([, args]) => await runToEnd(args)))
  for (const [i, [name, , line]] of cases.entries()) {
    const r = runs[i] ?? { code: null, stdout: '', stderr: '' }
    t.not(r.code, 0, `${name}: non-zero exit`)
    const lines = r.stderr.trimEnd().split('\n')
    t.equal(lines.length, 1, `${name}: one line on stderr`)
    t.match(lines[0], line, name)
  }
})
