import { mkdtemp, rename, rm, symlink, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import { watchConfigFile } from '../lib/index.js'
import { fetchAll, nameServer, svcWithEndpoints, testProxy, until } from './helpers.js'

/** A pino logger whose lines land in an array. */
function captureLogger (): { logger: pino.Logger, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); cb() } })
  return { logger: pino({ level: 'info' }, stream), lines }
}

const manifest = (port: number, backendPort: number, ip = '127.0.6.1'): string => JSON.stringify({ apiVersion: 'v1', kind: 'List', items: svcWithEndpoints('web', '127.50.1.1', port, [{ ip, port: backendPort }]) })

async function setup (t: { teardown: (fn: () => unknown) => void }): Promise<{ dir: string, file: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'svcproxy-file-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return { dir, file: join(dir, 'services.json') }
}

t.test('in-place writes and rename-over saves are picked up', async (t) => {
  const a = await nameServer(t, 'a', '127.0.6.1')
  const b = await nameServer(t, 'b', '127.0.6.2')
  const { dir, file } = await setup(t)
  await writeFile(file, manifest(80, a.port))
  const p = testProxy(t)
  const src = await watchConfigFile(file, p, { pollIntervalMs: 100, debounceMs: 20 })
  t.teardown(() => src.close())
  const addr = p.address('default/web', 80)
  t.equal(await fetchAll(addr.address, addr.port), 'a')

  // In place: same inode, new content.
  await writeFile(file, manifest(80, b.port, '127.0.6.2'))
  t.ok(await until(async () => (await fetchAll(addr.address, addr.port)) === 'b'), 'in-place write applied')

  // Rename-over, as editors save: write a temp file, rename it onto the config.
  const tmp = join(dir, '.services.json.swp')
  await writeFile(tmp, manifest(81, a.port))
  await rename(tmp, file)
  t.ok(await until(() => { try { p.address('default/web', 81); return true } catch { return false } }), 'renamed-over file applied')
  const addr81 = p.address('default/web', 81)
  t.equal(await fetchAll(addr81.address, addr81.port), 'a')
})

t.test('ConfigMap-style symlink swap is picked up', async (t) => {
  const a = await nameServer(t, 'a', '127.0.6.3')
  const b = await nameServer(t, 'b', '127.0.6.4')
  const { dir } = await setup(t)
  // kubelet layout: services.json -> ..data/services.json, ..data -> ..2024_01 (swapped atomically)
  await mkdir(join(dir, '..v1'))
  await writeFile(join(dir, '..v1', 'services.json'), manifest(80, a.port, '127.0.6.3'))
  await symlink('..v1', join(dir, '..data'))
  await symlink(join('..data', 'services.json'), join(dir, 'services.json'))
  const p = testProxy(t)
  const src = await watchConfigFile(join(dir, 'services.json'), p, { pollIntervalMs: 100, debounceMs: 20 })
  t.teardown(() => src.close())
  const addr = p.address('default/web', 80)
  t.equal(await fetchAll(addr.address, addr.port), 'a')

  await mkdir(join(dir, '..v2'))
  await writeFile(join(dir, '..v2', 'services.json'), manifest(80, b.port, '127.0.6.4'))
  await symlink('..v2', join(dir, '..data_tmp'))
  await rename(join(dir, '..data_tmp'), join(dir, '..data'))
  t.ok(await until(async () => (await fetchAll(addr.address, addr.port)) === 'b'), 'swap applied')
})

t.test('a bad edit keeps the last good state and logs every error; a half-written file is waited out', async (t) => {
  const a = await nameServer(t, 'a', '127.0.6.5')
  const { file } = await setup(t)
  await writeFile(file, manifest(80, a.port, '127.0.6.5'))
  const p = testProxy(t)
  const { logger, lines } = captureLogger()
  const results: boolean[] = []
  const src = await watchConfigFile(file, p, { logger, pollIntervalMs: 100, debounceMs: 20, settleMs: 300, onSync: (ok) => results.push(ok) })
  t.teardown(() => src.close())
  const addr = p.address('default/web', 80)

  // Half-written, then completed within the settle window: no error is reported.
  const full = manifest(80, a.port, '127.0.6.5').replace('"web"', '"web"') + '\n'
  await writeFile(file, full.slice(0, 40))
  await new Promise((resolve) => setTimeout(resolve, 60))
  await writeFile(file, full)
  await until(() => results.length >= 1)
  t.equal(lines.filter((l) => l.msg === 'config rejected; still serving the last good state').length, 0, 'no error for a file completed in time')

  // A real mistake: a bad targetPort. Logged with its path; old state keeps serving.
  const bad = JSON.parse(manifest(80, a.port, '127.0.6.5')) as { items: Array<{ spec?: { ports: Array<Record<string, unknown>> } }> }
  const svc = bad.items[0]
  if (svc?.spec?.ports[0] !== undefined) svc.spec.ports[0].targetPort = 'Not_A_Name!'
  const before = results.length
  await writeFile(file, JSON.stringify(bad))
  t.ok(await until(() => results.length > before && results[results.length - 1] === false, 5000), 'the bad edit was rejected')
  const err = lines.find((l) => l.msg === 'config rejected; still serving the last good state')
  t.ok(err, 'error logged')
  t.match(JSON.stringify(err?.errors), /Service default\/web: spec\.ports\[0\]\.targetPort/)
  t.equal(await fetchAll(addr.address, addr.port), 'a', 'last good state still serving')
  t.equal(src.lastError?.constructor.name, 'ValidationError')

  // An invalid first load fails startup.
  await writeFile(file, '{')
  await t.rejects(watchConfigFile(file, testProxy(t), { settleMs: 50 }), { code: 'SVCPROXY_INVALID' })
})
