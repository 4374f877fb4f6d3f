// A big reload under traffic (issue 18, defect 3): a proxy serving a small manifest through its
// file source is handed a ~50 MB manifest (7,000 services with their slices and 3 pods each,
// kubectl-sized), as a ConfigMap swap plus SIGHUP would; then SIGHUP again with the same file
// (read, compared object by object, nothing changes). While each reload runs, a client keeps
// making proxied HTTP requests one after another, each on a new connection. Printed per reload:
// its duration, the proxy's event-loop delay (p99, max) over it, the latency of the proxied
// requests made during it, and the proxy's RSS after (after a GC, and once the reader thread
// has ended). The proxy runs alone in a child process, so its loop and its RSS are its own.
//   node dist/bench/reload.js [--mb 50] [--out FILE]
//   node dist/bench/reload.js --write FILE     (only writes the big manifest, for profiling)
import { type ChildProcess, fork } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { rename } from 'node:fs/promises'
import { createServer, get, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { createProxy } from '../lib/index.js'
import { READER_LINGER_MS } from '../lib/model/read-off-thread.js'
import { watchConfigFile } from '../lib/sources/file.js'

const PROBE_IP = '127.96.255.1'
const PROBE_PORT = 8080
const BACKEND_IP = '127.0.77.1'

interface Msg { type: string, [k: string]: unknown }

// ------------------------------------------------------------------ the manifests

const meta = (kind: string, name: string, namespace: string, labels: Record<string, string>, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  name,
  namespace,
  uid: `${kind.toLowerCase()}-${namespace}-${name}-0000-1111-2222-333333333333`,
  resourceVersion: String(100000 + name.length * 7919),
  creationTimestamp: '2026-11-01T10:00:00Z',
  labels,
  ...extra,
})

function probe (backendPort: number): unknown[] {
  return [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'probe', namespace: 'default' }, spec: { clusterIP: PROBE_IP, ports: [{ name: 'http', port: PROBE_PORT }] } },
    { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'probe', namespace: 'default' }, subsets: [{ addresses: [{ ip: BACKEND_IP }], ports: [{ name: 'http', port: backendPort }] }] },
  ]
}

/** One service as kubectl prints it, with its EndpointSlice and 3 pods. */
function group (i: number): unknown[] {
  const ns = `team-${i % 20}`
  const name = `svc-${i}`
  const app = { app: name, tier: 'backend' }
  const applied = JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns, labels: app }, spec: { selector: app, ports: [{ name: 'http', port: 8080, targetPort: 'http' }] } })
  const clusterIP = `127.96.${(i >> 8) & 255}.${i & 255}`
  const out: unknown[] = [{
    apiVersion: 'v1',
    kind: 'Service',
    metadata: meta('Service', name, ns, app, { annotations: { 'kubectl.kubernetes.io/last-applied-configuration': applied } }),
    spec: { type: 'ClusterIP', clusterIP, clusterIPs: [clusterIP], ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack', selector: app, sessionAffinity: 'None', internalTrafficPolicy: 'Cluster', ports: [{ name: 'http', port: 8080, protocol: 'TCP', targetPort: 'http' }] },
    status: { loadBalancer: {} },
  }]
  const endpoints = []
  for (let k = 0; k < 3; k++) {
    const pod = `${name}-7d4b9c5f8-${k}x${i % 97}`
    const ip = `10.${(i >> 8) & 255}.${i & 255}.${k + 1}`
    const node = `node-${(i + k) % 50}`
    endpoints.push({ addresses: [ip], conditions: { ready: true, serving: true, terminating: false }, nodeName: node, targetRef: { kind: 'Pod', name: pod, namespace: ns, uid: `pod-${pod}` }, zone: `zone-${k}` })
    out.push({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: meta('Pod', pod, ns, { ...app, 'pod-template-hash': '7d4b9c5f8' }, { generateName: `${name}-7d4b9c5f8-`, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${name}-7d4b9c5f8`, uid: `rs-${name}`, controller: true, blockOwnerDeletion: true }] }),
      spec: {
        nodeName: node,
        containers: [{
          name: 'app',
          image: `registry.example.com/team/${name}:1.2.3`,
          ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
          env: [{ name: 'SERVICE_NAME', value: name }, { name: 'LOG_LEVEL', value: 'info' }],
          resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
          readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 10 },
          volumeMounts: [{ name: 'kube-api-access', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }],
        }],
        restartPolicy: 'Always',
        serviceAccountName: 'default',
      },
      status: {
        phase: 'Running',
        podIP: ip,
        podIPs: [{ ip }],
        hostIP: `192.168.0.${(i + k) % 50 + 1}`,
        conditions: [{ type: 'Initialized', status: 'True' }, { type: 'Ready', status: 'True' }, { type: 'ContainersReady', status: 'True' }, { type: 'PodScheduled', status: 'True' }],
        containerStatuses: [{ name: 'app', ready: true, restartCount: 0, started: true, image: `registry.example.com/team/${name}:1.2.3`, imageID: 'sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef' }],
      },
    })
  }
  out.push({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: meta('EndpointSlice', `${name}-abcde`, ns, { 'kubernetes.io/service-name': name, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' }),
    addressType: 'IPv4',
    endpoints,
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  })
  return out
}

/** A List of about `bytes` of JSON: the probe service, then groups until the size is reached. */
function bigManifest (bytes: number, backendPort: number): { text: string, services: number, objects: number } {
  const perGroup = JSON.stringify(group(12345)).length + 8
  const services = Math.min(60000, Math.ceil(bytes / perGroup))
  const items: unknown[] = probe(backendPort)
  for (let i = 0; i < services; i++) items.push(...group(i))
  return { text: JSON.stringify({ apiVersion: 'v1', kind: 'List', items }), services: services + 1, objects: items.length }
}

// ------------------------------------------------------------------ the proxy (child)

async function child (dir: string): Promise<void> {
  const send = (m: Msg): void => { process.send?.(m) }
  const config = join(dir, 'config.json')
  const proxy = createProxy({ logger: pino({ level: 'silent' }) })
  const source = await watchConfigFile(config, proxy, { pollIntervalMs: 3_600_000 })
  const rss = (): number => process.memoryUsage().rss / 1048576
  let before = 0
  process.on('message', (m: Msg) => {
    void (async () => {
      if (m.type === 'prepare') {
        // Forced GCs hold the loop: never while the client measures.
        global.gc?.()
        before = rss()
        send({ type: 'prepared' })
      } else if (m.type === 'reload' || m.type === 'again') {
        const h = monitorEventLoopDelay({ resolution: 5 })
        h.enable()
        const t0 = performance.now()
        // A ConfigMap swap (rename over the file), then SIGHUP's reload(); or SIGHUP alone.
        if (m.type === 'reload') await rename(join(dir, 'big.json'), config)
        const ok = await source.reload()
        const ms = performance.now() - t0
        h.disable()
        const after = rss()
        send({ type: 'reloaded', ok, ms, p99: h.percentile(99) / 1e6, max: h.max / 1e6, listeners: proxy.dataplane.frontends.size, ports: proxy.table.allStates().length })
        // The forced GCs below hold the loop: only once the client has stopped.
        await once(process, 'message')
        global.gc?.()
        const afterGc = rss()
        // The reader thread may linger after a read, in case another follows; then it ends.
        await new Promise((resolve) => setTimeout(resolve, READER_LINGER_MS + 500))
        global.gc?.()
        send({ type: 'rss', before, after, afterGc, settled: rss() })
      } else if (m.type === 'stop') {
        source.close()
        await proxy.close()
        process.exit(0)
      }
    })()
  })
  send({ type: 'ready' })
}

// ------------------------------------------------------------------ the client (parent)

function request (): Promise<number> {
  const t0 = performance.now()
  return new Promise((resolve, reject) => {
    const req = get({ host: PROBE_IP, port: PROBE_PORT, path: '/', agent: false }, (res) => {
      res.resume()
      res.on('end', () => { resolve(performance.now() - t0) })
    })
    req.on('error', reject)
  })
}

interface Run {
  ok: boolean
  reloadMs: number
  loopDelayP99Ms: number
  loopDelayMaxMs: number
  requests: number
  requestP99Ms: number
  slowestRequestMs: number
  requestsOver50Ms: Array<{ at: number, ms: number }>
  requestAfterMs: number
  listeners: number
  servicePorts: number
  rssBeforeMiB: number
  rssAfterMiB: number
  rssAfterGcMiB: number
  rssSettledMiB: number
}

/** One reload in the child while this process makes requests back to back until it is done. */
async function measure (c: ChildProcess, type: 'reload' | 'again'): Promise<Run> {
  c.send({ type: 'prepare' })
  await once(c, 'message')
  let reloading = true
  const during: Array<{ at: number, ms: number }> = []
  const started = performance.now()
  const done = new Promise<Msg>((resolve) => c.once('message', (m: Msg) => { reloading = false; resolve(m) }))
  c.send({ type })
  const client = (async () => {
    while (reloading) {
      const at = performance.now() - started
      during.push({ at, ms: await request() })
    }
  })()
  const r = await done
  await client
  const after = await request()
  c.send({ type: 'memory' })
  const [mem] = await once(c, 'message') as [Msg]
  const sorted = during.map((d) => d.ms).sort((a, b) => a - b)
  return {
    ok: r.ok as boolean,
    reloadMs: r.ms as number,
    loopDelayP99Ms: r.p99 as number,
    loopDelayMaxMs: r.max as number,
    requests: during.length,
    requestP99Ms: sorted[Math.floor(sorted.length * 0.99)] ?? 0,
    slowestRequestMs: sorted[sorted.length - 1] ?? 0,
    requestsOver50Ms: during.filter((d) => d.ms >= 50).map((d) => ({ at: Math.round(d.at), ms: Math.round(d.ms) })),
    requestAfterMs: after,
    listeners: r.listeners as number,
    servicePorts: r.ports as number,
    rssBeforeMiB: mem.before as number,
    rssAfterMiB: mem.after as number,
    rssAfterGcMiB: mem.afterGc as number,
    rssSettledMiB: mem.settled as number,
  }
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { mb: { type: 'string', default: '50' }, out: { type: 'string' }, write: { type: 'string' }, child: { type: 'string' } } })
  if (values.child !== undefined) return await child(values.child)
  if (values.write !== undefined) { writeFileSync(values.write, bigManifest(Number(values.mb) * 1e6, 8080).text); return }

  const backend: Server = createServer((_req, res) => { res.end('ok') })
  backend.listen(0, BACKEND_IP)
  await once(backend, 'listening')
  const backendPort = (backend.address() as { port: number }).port

  const dir = mkdtempSync(join(tmpdir(), 'svcproxy-reload-'))
  const big = bigManifest(Number(values.mb) * 1e6, backendPort)
  writeFileSync(join(dir, 'big.json'), big.text)
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ apiVersion: 'v1', kind: 'List', items: probe(backendPort) }))

  const c = fork(fileURLToPath(import.meta.url), ['--child', dir], { execArgv: [...process.execArgv, '--expose-gc'] })
  const [ready] = await once(c, 'message') as [Msg]
  if (ready.type !== 'ready') throw new Error('child did not start')
  // Warm and idle: the median of 21 requests before the first reload.
  const warm: number[] = []
  for (let i = 0; i < 21; i++) warm.push(await request())
  const idleRequestMs = warm.sort((a, b) => a - b)[10] ?? 0
  const swap = await measure(c, 'reload')
  const again = await measure(c, 'again')
  c.send({ type: 'stop' })
  await once(c, 'exit')
  backend.close()
  rmSync(dir, { recursive: true, force: true })

  const f = (n: number, d = 1): string => n.toFixed(d)
  process.stdout.write(`svcproxy reload bench, node ${process.version}: ${f(big.text.length / 1e6)} MB, ${big.services} services, ${big.objects} objects; a warm idle request takes ${f(idleRequestMs)} ms\n`)
  for (const [name, r] of [['swap in the big manifest', swap], ['SIGHUP, same file again', again]] as const) {
    const rows: Array<[string, string]> = [
      ['reload', `${r.ok ? 'applied' : 'REJECTED'}: ${r.servicePorts} service ports, ${r.listeners} listeners, in ${f(r.reloadMs, 0)} ms`],
      ['event-loop delay', `p99 ${f(r.loopDelayP99Ms)} ms, max ${f(r.loopDelayMaxMs)} ms`],
      ['proxied requests', `${r.requests}: p99 ${f(r.requestP99Ms)} ms, slowest ${f(r.slowestRequestMs)} ms; the next one after: ${f(r.requestAfterMs)} ms`],
      ['requests of 50 ms or more', r.requestsOver50Ms.length === 0 ? 'none' : r.requestsOver50Ms.map((d) => `${d.ms} ms at +${d.at} ms`).join(', ')],
      ['proxy RSS', `${f(r.rssBeforeMiB, 0)} MiB before, ${f(r.rssAfterMiB, 0)} MiB after, ${f(r.rssAfterGcMiB, 0)} MiB after a GC, ${f(r.rssSettledMiB, 0)} MiB once the reader thread ended`],
    ]
    process.stdout.write(`${name}\n`)
    for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(26)} ${v}\n`)
  }
  if (values.out !== undefined) writeFileSync(values.out, `${JSON.stringify({ node: process.version, manifestMB: big.text.length / 1e6, services: big.services, objects: big.objects, idleRequestMs, swap, again }, null, 2)}\n`)
}

main().catch((err: unknown) => { process.stderr.write(`reload bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`); process.exit(1) })
