// --vip-interface on one node (issue 15): inside a network namespace this test creates, the daemon
// creates its link (a bridge where the kernel has no dummy driver), adds a service's address before
// binding it, removes it when the service goes, prunes what a SIGKILLed run left, and `cleanup`
// removes the link. Without CAP_NET_ADMIN it refuses to start, naming the capability.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { cliCommand, runCli, until } from './helpers.js'

const NS = `svcp-${process.pid}-vip`
const LINK = 'svc0'

function ip (...args: string[]): { code: number, out: string, err: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8' })
  if (r.error !== undefined) throw new Error(`ip is missing (install iproute2): ${r.error.message}`)
  return { code: r.status ?? 1, out: r.stdout, err: r.stderr }
}

/** Addresses on the link inside the namespace (link-local left out); null when there is no link. */
function addresses (): string[] | null {
  const r = ip('-n', NS, '-json', 'address', 'show', 'dev', LINK)
  if (r.code !== 0) return null
  const links = JSON.parse(r.out) as Array<{ addr_info: Array<{ local: string }> }>
  return links.flatMap((l) => l.addr_info.map((a) => a.local)).filter((a) => !a.startsWith('fe80:')).sort()
}

function manifest (file: string, clusterIP: string | null): void {
  const items: unknown[] = [{ apiVersion: 'v1', kind: 'Service', metadata: { name: 'probe', namespace: 'default' }, spec: { clusterIP: '127.96.0.9', ports: [{ port: 80 }] } }]
  if (clusterIP !== null) {
    items.push(
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { clusterIP, ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'dns', port: 53, protocol: 'UDP' }] } },
      { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'web', namespace: 'default' }, subsets: [{ addresses: [{ ip: '127.0.0.1' }], ports: [{ name: 'http', port: 8080 }, { name: 'dns', port: 5353, protocol: 'UDP' }] }] },
    )
  }
  writeFileSync(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items }))
}

function daemon (file: string): { child: ChildProcess, log: () => string } {
  const [cmd, argv] = cliCommand('run', '--config', file, '--vip-interface', LINK, '--healthz-bind-address', '', '--metrics-bind-address', '')
  const child = spawn('ip', ['netns', 'exec', NS, cmd, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  child.stdout?.on('data', (d: Buffer) => { log += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { log += d.toString() })
  return { child, log: () => log }
}

/** An HTTP GET from inside the namespace; the status code, or the error text. */
function getInside (url: string): string {
  const r = spawnSync('ip', ['netns', 'exec', NS, process.execPath, '-e', `fetch(${JSON.stringify(url)}).then((r) => console.log(r.status), (e) => console.log(e.cause?.code ?? e.message))`], { encoding: 'utf8' })
  return r.stdout.trim()
}

t.before(() => {
  if (process.getuid?.() !== 0) throw new Error(`this test needs root (network namespaces), running as uid ${process.getuid?.() ?? '?'}`)
  ip('netns', 'del', NS)
  const add = ip('netns', 'add', NS)
  if (add.code !== 0) throw new Error(`ip netns add: ${add.err}`)
  ip('-n', NS, 'link', 'set', 'lo', 'up')
})
t.teardown(() => {
  spawnSync('pkill', ['-9', '-f', `netns exec ${NS} `])
  ip('netns', 'del', NS)
})

t.test('a service address is added before binding, removed when the service goes, pruned after a SIGKILL, and cleanup removes the link', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'svcp-vip-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'services.json')
  manifest(file, '10.96.0.10')
  const backend = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', "require('http').createServer((q, s) => s.end('web')).listen(8080, '127.0.0.1', () => console.log('up'))"], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { backend.kill('SIGKILL') })
  await new Promise((resolve) => backend.stdout?.once('data', resolve))

  let d = daemon(file)
  t.ok(await until(() => d.log().includes('config applied'), 30_000), 'the daemon served the manifest')
  t.same(addresses(), ['10.96.0.10'], 'the clusterIP is on the link, the loopback probe service is not')
  t.match(d.log(), /"kind":"(dummy|bridge)"/, 'the link was created')
  if (d.log().includes('"kind":"bridge"')) t.match(d.log(), /no dummy link driver/, 'the bridge fallback is logged')
  t.equal(getInside('http://10.96.0.10/'), '200', 'the clusterIP answers inside the namespace')

  manifest(file, '10.96.0.11')
  t.ok(await until(() => JSON.stringify(addresses()) === '["10.96.0.11"]', 30_000), `a changed clusterIP moves the address: ${JSON.stringify(addresses())}`)
  t.ok(await until(() => getInside('http://10.96.0.11/') === '200', 10_000), 'and serves there')

  d.child.kill('SIGKILL')
  await new Promise((resolve) => d.child.once('exit', resolve))
  t.equal(ip('-n', NS, 'address', 'add', '10.96.9.9/32', 'dev', LINK).code, 0, 'a leftover address, as after a crash mid-change')
  d = daemon(file)
  t.ok(await until(() => d.log().includes('config applied'), 30_000), 'restarted')
  t.ok(await until(() => JSON.stringify(addresses()) === '["10.96.0.11"]', 10_000), `the leftover is pruned, nothing duplicated: ${JSON.stringify(addresses())}`)

  manifest(file, null)
  t.ok(await until(() => JSON.stringify(addresses()) === '[]', 30_000), 'deleting the service removes its address')
  d.child.kill('SIGTERM')
  await new Promise((resolve) => d.child.once('exit', resolve))

  const [cmd, argv] = cliCommand('cleanup', '--vip-interface', LINK)
  const c = spawnSync('ip', ['netns', 'exec', NS, cmd, ...argv], { encoding: 'utf8' })
  t.equal(c.status, 0, c.stderr)
  t.match(c.stdout, /removed svc0/)
  t.equal(addresses(), null, 'the link is gone')
})

t.test('without CAP_NET_ADMIN the daemon refuses to start, naming the capability', async (t) => {
  const r = await runCliAs(65534, ['run', '--config', '/nonexistent.json', '--vip-interface', LINK, '--healthz-bind-address', '', '--metrics-bind-address', ''])
  t.not(r.code, 0)
  t.match(r.stderr, /CAP_NET_ADMIN/)
  const c = await runCliAs(65534, ['cleanup', '--vip-interface', LINK])
  t.not(c.code, 0)
  t.match(c.stderr, /CAP_NET_ADMIN/)
  const bad = await runCli(['cleanup', '--vip-interface', 'no/such name'])
  t.equal(bad.code, 2, 'a malformed name is a usage error')
  t.match(bad.stderr, /link name/)
})

async function runCliAs (uid: number, args: string[]): Promise<{ code: number | null, stderr: string }> {
  const [cmd, argv] = cliCommand(...args)
  const child = spawn(cmd, argv, { uid, gid: uid, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const [code] = await new Promise<[number | null]>((resolve) => child.once('exit', (c) => resolve([c])))
  return { code, stderr }
}
