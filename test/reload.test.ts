// A big reload (issue 18, defect 3): the file is read, parsed and validated on a worker thread,
// and applied in slices. How fast is for bench/reload.ts; these tests check what must hold on
// any machine: the reader gives what readDocumentFile gives (under the TypeScript loader and from
// dist/), the data path serves while a reload runs, the reload applies in full, and a reader of
// the table between slices sees the state before the write or after it, never a mix.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import t from 'tap'
import { FileError, ValidationError, watchConfigFile } from '../lib/index.js'
import { parseObjects, readDocumentFile } from '../lib/model/document.js'
import { readDocumentFileOffThread } from '../lib/model/read-off-thread.js'
import { BATCH_CHARS } from '../lib/model/read-worker.js'
import { echoServer, fetchAll, svcWithEndpoints, testProxy } from './helpers.js'

const root = resolve(fileURLToPath(new URL('..', import.meta.url)))

async function tempDir (t: { teardown: (fn: () => unknown) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'svcproxy-reload-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** `n` services as kubectl prints them (annotations and all), each with its Endpoints and two pods: about 2 KB each. */
function bulk (n: number): unknown[] {
  const out: unknown[] = []
  for (let i = 1; i <= n; i++) {
    const name = `svc-${i}`
    const labels = { app: name, tier: 'backend' }
    const meta = { name, namespace: 'bulk', labels, annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({ metadata: { name, labels }, spec: { selector: labels } }) } }
    out.push({ apiVersion: 'v1', kind: 'Service', metadata: meta, spec: { clusterIP: `127.57.${i >> 8}.${i & 255}`, selector: labels, ports: [{ name: 'http', port: 8080, targetPort: 8080 }] } })
    const ips = [1, 2].map((k) => `10.${i >> 8}.${i & 255}.${k}`)
    out.push({ apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: 'bulk' }, subsets: [{ addresses: ips.map((ip) => ({ ip })), ports: [{ name: 'http', port: 8080 }] }] })
    for (const [k, ip] of ips.entries()) {
      out.push({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `${name}-${k}`, namespace: 'bulk', labels }, spec: { nodeName: 'node-1', containers: [{ name: 'app', image: `registry.example/${name}:1.0`, ports: [{ name: 'http', containerPort: 8080 }] }] }, status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: 'True' }] } })
    }
  }
  return out
}

const probe = (backendPort: number): unknown[] => svcWithEndpoints('probe', '127.57.255.1', 7, [{ ip: '127.0.57.1', port: backendPort }])
const list = (items: unknown[]): string => JSON.stringify({ apiVersion: 'v1', kind: 'List', items })

t.test('the off-thread reader gives what readDocumentFile gives', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'big.json')
  await writeFile(file, list([...bulk(1000), { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'skipped' } }]))
  const here = await readDocumentFile(file)
  t.ok(JSON.stringify(here.objects).length > 3 * BATCH_CHARS, 'several batches')
  const read = await readDocumentFileOffThread(file)
  t.equal(read.doc?.objects.length, here.objects.length)
  t.equal(JSON.stringify(read.doc?.objects), JSON.stringify(here.objects), 'the same objects, in the same order')
  t.same(read.doc?.warnings, here.warnings)
  t.match(read.hash, /^[0-9a-f]{64}$/)

  const again = await readDocumentFileOffThread(file, read.hash)
  t.same(again, { hash: read.hash, doc: null }, 'the same bytes again: nothing parsed')

  await writeFile(file, list([{ apiVersion: 'v1', kind: 'Service', metadata: { name: 'bad' }, spec: { ports: [{ port: 70000 }] } }]))
  const local = await readDocumentFile(file).catch((err: unknown) => err)
  const off = await readDocumentFileOffThread(file).catch((err: unknown) => err)
  t.type(off, ValidationError)
  t.same((off as ValidationError).issues, (local as ValidationError).issues, 'the same issues')

  const missing = join(dir, 'nope.json')
  const gone = await readDocumentFileOffThread(missing).catch((err: unknown) => err)
  t.type(gone, FileError)
  t.equal((gone as Error).message, (await readDocumentFile(missing).catch((err: unknown) => err) as Error).message)
})

t.test('from dist/ the reader runs read-worker.js next to it', async (t) => {
  const dist = join(root, 'dist', 'lib', 'model', 'read-off-thread.js')
  t.ok(existsSync(dist) && existsSync(join(root, 'dist', 'lib', 'model', 'read-worker.js')), 'dist/ is built (npm test builds it; or npx tsc -p tsconfig.build.json)')
  const dir = await tempDir(t)
  const file = join(dir, 'some.json')
  await writeFile(file, list(bulk(200)))
  // A plain node, without the TypeScript loader: what `svcproxy run` is; with a process-wide flag
  // (which a worker given explicit options refuses), and once through `--input-type=module -e`
  // (which a worker started from a file refuses).
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/TAP|NODE_OPTIONS/.test(k)))
  const code = `const m = await import(${JSON.stringify(pathToFileURL(dist).href)}); const r = await m.readDocumentFileOffThread(${JSON.stringify(file)}); console.log(r.doc.objects.length, r.hash.length)`
  const script = join(dir, 'read.mjs')
  await writeFile(script, code)
  for (const args of [[script], ['--input-type=module', '-e', code]]) {
    const r = spawnSync(process.execPath, ['--expose-gc', ...args], { encoding: 'utf8', env })
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stdout.trim(), '800 64', args[0] === script ? 'node file.mjs' : 'node --input-type=module -e')
  }
})

t.test('a big reload: a proxied request made during it completes, and the reload applies in full', async (t) => {
  const echo = await echoServer(t, '127.0.57.1')
  const dir = await tempDir(t)
  const file = join(dir, 'services.json')
  await writeFile(file, list(probe(echo.port)))
  const p = testProxy(t)
  const src = await watchConfigFile(file, p, { pollIntervalMs: 3_600_000 })
  t.teardown(() => src.close())
  const addr = p.address('default/probe', 7)
  t.equal(await fetchAll(addr.address, addr.port, 'before'), 'before')

  const n = 1500
  await writeFile(file, list([...probe(echo.port), ...bulk(n)]))
  let reloaded = false
  const reload = src.reload().finally(() => { reloaded = true })
  const first = fetchAll(addr.address, addr.port, 'during')
  let during = 0
  while (!reloaded) {
    t.equal(await fetchAll(addr.address, addr.port, 'ping'), 'ping')
    if (!reloaded) during++
  }
  t.equal(await first, 'during', 'the request made during the reload completed')
  t.ok(during > 0, `${during} more requests completed while the reload ran`)
  t.equal(await reload, true, 'the reload applied')
  t.equal(p.table.allStates().length, n + 1, 'every service port is in the table')
  t.equal(p.dataplane.frontends.size, n + 1, 'and has its listener')
  const last = p.address(`bulk/svc-${n}`, 'http')
  t.equal(last.address, `127.57.${n >> 8}.${n & 255}`)
  t.equal(await fetchAll(addr.address, addr.port, 'after'), 'after')
})

t.test('replace() runs in slices: the loop turns while it runs, and readers see the state before or after, never between', async (t) => {
  const echo = await echoServer(t, '127.0.57.1')
  const p = testProxy(t)
  await p.apply(probe(echo.port))
  const addr = p.address('default/probe', 7)
  const n = 1500
  const objects = parseObjects([...probe(echo.port), ...bulk(n)], '<bulk>').objects
  const before = p.table.revision
  const seen = new Set<string>()
  // What a reader (status, /metrics, address()) sees: the revision, and whether the first and the
  // last new service are in; sampled on every turn of the loop until the write is done.
  const sample = (): void => { seen.add(`${p.table.revision} ${p.table.statesOf('bulk/svc-1').length} ${p.table.statesOf(`bulk/svc-${n}`).length}`) }
  let done = false
  let turns = 0
  const writing = p.replace(objects, '<bulk>').finally(() => { done = true })
  const request = fetchAll(addr.address, addr.port, 'during').then((r) => ({ r, beforeDone: !done }))
  await new Promise<void>((resolve) => {
    const turn = (): void => {
      sample()
      if (done) { resolve(); return }
      turns++
      setImmediate(turn)
    }
    turn()
  })
  const res = await writing
  t.equal(res.revision, before + 1)
  t.ok(turns > 1, `the loop turned ${turns} times while the write ran`)
  const r = await request
  t.equal(r.r, 'during')
  t.ok(r.beforeDone, 'a proxied request completed before the write was done')
  t.same([...seen].filter((s) => s !== `${before} 0 0` && s !== `${before + 1} 1 1`), [], 'only the state before and the state after were seen')
  t.ok(seen.has(`${before} 0 0`), 'the state before was seen while the write ran')
  t.equal(p.table.allStates().length, n + 1)
})
