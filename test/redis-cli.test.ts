// The store CLI (apply/delete/get) and `run --redis`, as child processes.

import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { main } from '../lib/cli/main.js'
import { storeKeys } from '../lib/store/schema.js'
import { cliCommand, fetchAll, nameServer, until, runCli } from './helpers.js'
import { freePort, startRedis } from './redis-helpers.js'

const root = new URL('..', import.meta.url).pathname

interface Run { code: number | null, stdout: string, stderr: string }

function cli (args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const clean = { ...process.env, REDIS_URL: '', ...env }
  return spawn(...cliCommand(...args), { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: clean })
}

async function runToEnd (args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return await runCli(args, { REDIS_URL: '', ...env })
}

/**
 * The same CLI in-process (main() is what bin/svcproxy.ts calls): spawning costs seconds per
 * run under the TypeScript loader, so only the daemon and one apply go through a process.
 */
async function cmd (args: string[], env: Record<string, string> = {}): Promise<Run> {
  let stdout = ''
  let stderr = ''
  const saved = process.env.REDIS_URL
  process.env.REDIS_URL = env.REDIS_URL ?? ''
  try {
    const code = await main(args, { out: (l) => { stdout += `${l}\n` }, err: (l) => { stderr += `${l}\n` } })
    return { code, stdout, stderr }
  } finally {
    if (saved === undefined) delete process.env.REDIS_URL
    else process.env.REDIS_URL = saved
  }
}

async function tmp (t: { teardown: (fn: () => unknown) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'svcproxy-redis-cli-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const svc = (name: string, port = 80, ns = 'default'): unknown => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { ports: [{ port }] } })
const eps = (name: string, ip: string, port: number): unknown => ({ apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: 'default' }, subsets: [{ addresses: [{ ip }], ports: [{ port }] }] })

t.test('apply, get, delete against a password-protected store; the password is never printed', async (t) => {
  const secret = 'pa55-w0rd-xyz'
  const r = await startRedis(t, ['--requirepass', secret])
  const dir = await tmp(t)
  const file = join(dir, 'web.json')
  await writeFile(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [svc('web'), eps('web', '10.0.0.1', 8080), svc('api', 81, 'prod')] }))

  const applied = await runToEnd(['apply', '-f', file, '--redis', r.url])
  t.equal(applied.code, 0, applied.stderr)
  t.equal(applied.stdout, 'service/web created\nendpoints/web created\nservice/api -n prod created\n')
  t.match(applied.stderr, /revision 1/)

  const again = await cmd(['apply', '-f', file], { REDIS_URL: r.url })
  t.equal(again.code, 0, again.stderr)
  t.match(again.stdout, /service\/web unchanged/)

  const table = await cmd(['get', 'services', '--redis', r.url])
  t.equal(table.code, 0, table.stderr)
  const lines = table.stdout.trim().split('\n')
  t.match(lines[0], /^NAMESPACE\s+NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)$/)
  t.match(lines[1], /^default\s+web\s+ClusterIP\s+127\.96\.\d+\.\d+\s+<none>\s+80\/TCP$/)
  t.match(lines[2], /^prod\s+api\s+ClusterIP/)

  const ns = await cmd(['get', 'svc', '-n', 'prod', '--redis', r.url])
  t.match(ns.stdout, /^NAME\s+TYPE/)
  t.notMatch(ns.stdout, /web/)

  const json = await cmd(['get', 'endpoints', '-o', 'json', '--redis', r.url])
  const list = JSON.parse(json.stdout) as { kind: string, items: Array<{ metadata: { name: string } }> }
  t.same([list.kind, list.items.map((i) => i.metadata.name)], ['List', ['web']])

  const del = await cmd(['delete', 'service', 'default/web', '--redis', r.url])
  t.equal(del.code, 0, del.stderr)
  t.equal(del.stdout, 'service/web deleted\n')
  const missing = await cmd(['delete', 'pod', 'default/nope', '--redis', r.url])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /pod\/nope not found/)

  const wrong = await cmd(['get', 'services', '--redis', `redis://:${secret}x@127.0.0.1:${r.port}`])
  t.equal(wrong.code, 1)
  for (const out of [applied, again, table, ns, json, del, missing, wrong]) {
    t.notOk(out.stdout.includes(secret) || out.stderr.includes(secret), 'no password in the output')
  }
})

t.test('an invalid file writes nothing; an unreachable store fails fast with one line', async (t) => {
  const r = await startRedis(t)
  const dir = await tmp(t)
  const bad = join(dir, 'bad.json')
  await writeFile(bad, JSON.stringify([svc('ok'), { apiVersion: 'v1', kind: 'Service', metadata: { name: 'x' }, spec: { ports: [{ port: 70000 }] } }]))
  const res = await cmd(['apply', '-f', bad, '--redis', r.url])
  t.equal(res.code, 1)
  t.match(res.stderr, `${bad}: Service default/x: spec.ports[0].port`)
  const redis = await r.client()
  t.equal(await redis.exists(storeKeys().rev, storeKeys().objects, storeKeys().feed), 0, 'nothing written')

  await r.stop()
  const down = await cmd(['apply', '-f', bad.replace('bad', 'none'), '--redis', r.url])
  t.not(down.code, 0)
  const good = join(dir, 'good.json')
  await writeFile(good, JSON.stringify([svc('ok')]))
  const down2 = await cmd(['apply', '-f', good, '--redis', r.url])
  t.equal(down2.code, 1)
  t.match(down2.stderr, /svcproxy apply: cannot reach the store at redis:\/\/127\.0\.0\.1:\d+: connection refused/)
  t.equal(down2.stderr.trim().split('\n').length, 1, down2.stderr)
})

t.test('run --redis serves the store and follows it', async (t) => {
  const r = await startRedis(t)
  const a = await nameServer(t, 'a', '127.0.5.1')
  const b = await nameServer(t, 'b', '127.0.5.2')
  const port = await freePort()
  const dir = await tmp(t)
  const file = join(dir, 'web.json')
  await writeFile(file, JSON.stringify([svc('web', port), eps('web', '127.0.5.1', a.port)]))
  t.equal((await cmd(['apply', '-f', file, '--redis', r.url])).code, 0)

  const daemon = cli(['run', '--healthz-bind-address', '127.0.0.1:0', '--metrics-bind-address', '127.0.0.1:0', '--state-file', join(dir, 'state.json')], { REDIS_URL: r.url })
  let out = ''
  daemon.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  daemon.stderr?.on('data', (d: Buffer) => { out += d.toString() })
  t.teardown(() => { daemon.kill('SIGKILL') })
  t.ok(await until(() => out.includes('listed the store'), 15_000), out)

  const get = await cmd(['get', 'services', '-o', 'json', '--redis', r.url])
  const ip = (JSON.parse(get.stdout) as { items: Array<{ spec: { clusterIP: string } }> }).items[0]?.spec.clusterIP ?? ''
  t.ok(await until(async () => (await fetchAll(ip, port)) === 'a', 10_000), 'routed to a')

  await writeFile(file, JSON.stringify([eps('web', '127.0.5.2', b.port)]))
  t.equal((await cmd(['apply', '-f', file, '--redis', r.url])).code, 0)
  t.ok(await until(async () => (await fetchAll(ip, port)) === 'b', 10_000), 'follows the change')

  const exited = once(daemon, 'exit')
  daemon.kill('SIGTERM')
  const [code] = await exited as [number | null]
  t.equal(code, 0)
})
