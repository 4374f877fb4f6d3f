// svcproxy on a node, measured in network namespaces (issue 15): the cluster of
// test/node/cluster.test.ts (two nodes, pods on bridges, kernel routing between them).
//   a. 10,000 services with --vip-interface in one node namespace: time from start until every
//      address is on the link, the daemon says it serves, and sampled VIPs answer a client pod;
//      the daemon's RSS. The same services on loopback addresses (no --vip-interface) as the
//      baseline; a restart after SIGKILL (every address already there); `svcproxy cleanup`; and
//      the kernel's own share, the same adds as one `ip -batch` by hand (link up, and down).
//   b. One endpoint change written to Redis until the new endpoint (a pod on node2) answers a
//      client pod on node1 through node1's daemon: p50/p99 over --changes changes.
// Needs root and iproute2. Run after `npx tsc -p tsconfig.build.json`:
//   node dist/bench/node-vips.js [--services 10000] [--changes 100]

import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { cpus, release } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import { createStore } from '../lib/index.js'
import { endpointSlice, list, service } from '../test/node/manifests.js'
import {
  Cluster, type NsProcess, type PodSpec, ip, linkAddresses, missingPrerequisites, runIn, startDaemon, startRedisIn, svcproxyArgv,
  sweepStaleNamespaces, until,
} from '../test/node/netns.js'
import { Agent, startPodServer } from '../test/node/programs.js'

const { values } = parseArgs({ options: { services: { type: 'string', default: '10000' }, changes: { type: 'string', default: '100' } } })
const SERVICES = Number(values.services)
const CHANGES = Number(values.changes)

const PODS: PodSpec[] = [
  { name: 'web-1a', node: 1, ip: '10.244.1.10' },
  { name: 'web-2a', node: 2, ip: '10.244.2.10' },
  { name: 'web-2b', node: 2, ip: '10.244.2.11' },
  { name: 'client', node: 1, ip: '10.244.1.100' },
]

const rows: Array<[string, string]> = []
const row = (what: string, value: string): void => { rows.push([what, value]); console.error(`  ${what}: ${value}`) }
const ms = (n: number): string => `${n.toFixed(n < 10 ? 2 : 0)} ms`

/** VmRSS / VmHWM of a process, in MiB. */
function memory (pid: number): { rss: number, peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN)
  return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 }
}

/**
 * CPU time of a process and of its children it has waited for (the `ip` batches), in ms, from
 * /proc/PID/stat (utime, stime, cutime, cstime; 100 ticks a second). Steadier than wall time on a
 * shared machine; the kernel's work for an address add is charged to the `ip` process that asks.
 */
function cpu (pid: number | 'self'): { self: number, children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number)
  const tick = (i: number): number => (f[i] ?? NaN) * 10
  return { self: tick(11) + tick(12), children: tick(13) + tick(14) }
}

/** The i-th service address (1-based) in a /16: 10.96.0.1 … 10.96.39.16 for 10,000. */
const nth = (base: string, i: number): string => `${base}.${i >> 8}.${i & 255}`

/** N services, each one TCP port in front of pod web-1a, with Endpoints (the smallest form). */
function manyServices (n: number, base: string): string {
  const items: unknown[] = []
  for (let i = 1; i <= n; i++) {
    const name = `s-${i}`
    items.push({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'scale' }, spec: { clusterIP: nth(base, i), ports: [{ name: 'tcp', port: 80, targetPort: 8080 }] } })
    items.push({ apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: 'scale' }, subsets: [{ addresses: [{ ip: '10.244.1.10', nodeName: 'node1' }], ports: [{ name: 'tcp', port: 8080 }] }] })
  }
  return JSON.stringify(list(items))
}

/** Service addresses on node1's svc0 (the kernel's fe80:: link-local aside). */
function addressCount (c: Cluster): number {
  return (linkAddresses(c.node(1), 'svc0') ?? []).filter((a) => !a.startsWith('fe80:')).length
}

/** A spread of the services' addresses: the first, the last and evenly between. */
function sample (n: number, base: string, k = 50): string[] {
  const out = new Set<string>([nth(base, 1), nth(base, n)])
  for (let j = 1; out.size < Math.min(k, n); j++) out.add(nth(base, Math.max(1, Math.round((j * n) / k))))
  return [...out]
}

/**
 * One daemon serving `file` inside node1: the time from spawn until it says it serves (with
 * --vip-interface every address is added before its listener binds, so by then all are on the
 * link; nothing polls the link meanwhile, a dump of 10,000 addresses would compete for the CPU),
 * and until every sampled address answers the client.
 */
async function startMany (c: Cluster, client: Agent, file: string, base: string, vip: boolean): Promise<{ d: NsProcess, serving: number, answers: number, cpu: { self: number, children: number } }> {
  const t0 = performance.now()
  const argv = svcproxyArgv('run', '--config', file, '--log-level', 'warn', '--healthz-bind-address', '', '--metrics-bind-address', '', ...(vip ? ['--vip-interface', 'svc0'] : []))
  const d = c.start(c.node(1), argv, process.env)
  await d.waitOutput(/svcproxy: serving/, 180000)
  const serving = performance.now() - t0
  const used = cpu(d.pid)
  const targets = sample(SERVICES, base)
  const ok = await until(async () => (await Promise.all(targets.map((ip) => client.tcp(ip, 80)))).every((a) => a.data === 'web-1a'), 60000, 10)
  if (!ok) throw new Error('the sampled service addresses do not all answer')
  return { d, serving, answers: performance.now() - t0, cpu: used }
}

async function measureScale (c: Cluster, client: Agent, onNode: Agent): Promise<void> {
  // Baseline: the same services on loopback addresses, nothing added to any link (only the node
  // itself reaches those: the client is an agent in node1's namespace here).
  const loFile = join(c.dir, 'lo.json')
  writeFileSync(loFile, manyServices(SERVICES, '127.96'))
  const lo = await startMany(c, onNode, loFile, '127.96', false)
  row(`${SERVICES} services on 127.96/16, no --vip-interface: start → serving`, ms(lo.serving))
  row('  CPU used until then (daemon)', ms(lo.cpu.self))
  row(`${SERVICES} services on 127.96/16, no --vip-interface: start → 50 sampled addresses answer the node`, ms(lo.answers))
  row(`${SERVICES} services on 127.96/16, no --vip-interface: daemon RSS`, `${memory(lo.d.pid).rss.toFixed(0)} MiB`)
  await lo.d.kill('SIGKILL')

  const file = join(c.dir, 'many.json')
  writeFileSync(file, manyServices(SERVICES, '10.96'))
  const a = await startMany(c, client, file, '10.96', true)
  const mem = memory(a.d.pid)
  const onLink = addressCount(c)
  if (onLink !== SERVICES) throw new Error(`expected ${SERVICES} addresses on svc0 once serving, found ${onLink}`)
  row(`${SERVICES} services, --vip-interface: start → serving (all ${onLink} addresses on svc0)`, ms(a.serving))
  row(`  difference to the loopback baseline (the addresses' cost)`, ms(a.serving - lo.serving))
  row('  CPU used until then: daemon / its ip batches', `${ms(a.cpu.self)} / ${ms(a.cpu.children)}`)
  row(`${SERVICES} services, --vip-interface: start → 50 sampled VIPs answer a pod`, ms(a.answers))
  row(`${SERVICES} services, --vip-interface: daemon RSS (peak)`, `${mem.rss.toFixed(0)} MiB (${mem.peak.toFixed(0)} MiB)`)

  // SIGKILL leaves every address behind; a restart adopts them instead of adding them again.
  await a.d.kill('SIGKILL')
  const again = await startMany(c, client, file, '10.96', true)
  row(`restart after SIGKILL (${SERVICES} addresses already there): start → serving`, ms(again.serving))
  await again.d.kill('SIGKILL')

  const t0 = performance.now()
  const r = await runIn(c.node(1), svcproxyArgv('cleanup', '--vip-interface', 'svc0'))
  if (r.code !== 0) throw new Error(`cleanup exited ${r.code}: ${r.stderr}`)
  row(`svcproxy cleanup --vip-interface svc0 (${SERVICES} addresses)`, ms(performance.now() - t0))

  // The kernel's share: the same addresses added by one \`ip -batch\` by hand (what svcproxy runs),
  // to a fresh bridge that is up (as svcproxy keeps its link) and to one left down (as kube-ipvs0 is).
  const batch = Array.from({ length: SERVICES }, (_, i) => `address add ${nth('10.96', i + 1)}/32 dev probe0`).join('\n') + '\n'
  for (const state of ['up', 'down'] as const) {
    const ns = c.node(2)
    ip('-n', ns, 'link', 'add', 'probe0', 'type', 'bridge')
    if (state === 'up') ip('-n', ns, 'link', 'set', 'probe0', 'arp', 'off', 'up')
    const t1 = performance.now()
    const c1 = cpu('self').children
    const b = spawnSync('ip', ['-n', ns, '-force', '-batch', '-'], { input: batch, encoding: 'utf8' })
    const took = performance.now() - t1
    if (b.status !== 0) throw new Error(`ip -batch: ${b.stderr}`)
    row(`the kernel alone: one ip -batch of ${SERVICES} address adds to a link that is ${state} (wall / CPU)`, `${ms(took)} / ${ms(cpu('self').children - c1)}`)
    ip('-n', ns, 'link', 'del', 'probe0')
  }
}

function percentile (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN
}

async function measureChanges (c: Cluster, client: Agent): Promise<void> {
  const redis = await startRedisIn(c)
  const conn = new Redis({ path: redis.socket, maxRetriesPerRequest: 1 })
  const store = createStore({ client: conn, serviceClusterIPRange: '10.96.0.0/16' })
  const pods = PODS.filter((p) => p.node === 2)
  const vip = '10.96.0.10'
  await store.apply(list([service({ name: 'flip', clusterIP: vip, tcpPort: 80 }), endpointSlice('flip', [pods[0] as PodSpec], false)]))
  for (const n of [1, 2] as const) await startDaemon(c, { redisUrl: redis.url, node: n, stateFile: join(c.dir, `node${n}.state.json`), extra: ['--log-level', 'warn'] })
  if (!await until(async () => (await client.tcp(vip, 80)).data === pods[0]?.name, 20000)) throw new Error('the service does not answer')

  const lag: number[] = []
  const write: number[] = []
  for (let i = 1; i <= CHANGES; i++) {
    const next = pods[i % 2] as PodSpec
    const seen = client.until(vip, 80, next.name, 10000)
    await client.tcp(vip, 80) // the agent answers in order of arrival: the loop above is running now
    const t0 = performance.timeOrigin + performance.now()
    await store.apply(list([endpointSlice('flip', [next], false)]))
    write.push(performance.timeOrigin + performance.now() - t0)
    const a = await seen
    if (!a.ok || a.at === undefined) throw new Error(`change ${i}: ${next.name} never answered (${a.code ?? ''})`)
    lag.push(a.at - t0)
  }
  lag.sort((x, y) => x - y)
  write.sort((x, y) => x - y)
  row(`endpoint change in Redis → new endpoint (node2) answers a pod on node1: p50 (${CHANGES} changes)`, ms(percentile(lag, 50)))
  row('  p99', ms(percentile(lag, 99)))
  row('  max', ms(lag[lag.length - 1] ?? NaN))
  row('  of which the write itself (RedisStore.apply over a unix socket): p50', ms(percentile(write, 50)))
  await store.close()
  conn.disconnect()
}

async function main (): Promise<void> {
  const missing = missingPrerequisites()
  if (missing.length > 0) throw new Error(`cannot build the namespace cluster; missing: ${missing.join('; ')}`)
  sweepStaleNamespaces()
  const c = new Cluster({ pods: PODS })
  const stop = (): void => { void c.destroy().then(() => process.exit(130)) }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  try {
    c.build()
    for (const p of PODS) if (p.name !== 'client') await startPodServer(c, p.name)
    const client = await Agent.start(c, c.pod('client'))
    const onNode = await Agent.start(c, c.node(1))
    console.error(`node-vips: ${SERVICES} services, ${CHANGES} changes (progress on stderr, the table on stdout)`)
    await measureScale(c, client, onNode)
    await measureChanges(c, client)
  } finally {
    await c.destroy()
  }
  const width = Math.max(...rows.map(([w]) => w.length))
  console.log(`svcproxy on a node, in network namespaces: Linux ${release()}, ${cpus().length} CPUs, Node ${process.version}`)
  for (const [w, v] of rows) console.log(`${w.padEnd(width)}  ${v.padStart(16)}`)
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
