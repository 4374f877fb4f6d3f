import type { ServiceProxy } from '../api/service-proxy.js'
import type { ServicePortRuntime } from '../frontend/runtime.js'
import type { SourceHealth } from '../sources/health.js'
import type { Backend } from '../balancer/backend.js'
import type { FaultCounts } from '../faults/fault-set.js'
import { type FamilyName, METRIC_FAMILIES, type MetricFamily } from './families.js'
import { Exposition, labels } from './metrics.js'
import type { ProcessStats } from './process-stats.js'

type RtCounter = (rt: ServicePortRuntime) => number
type EpCounter = (b: Backend) => number

/**
 * Per-service-port and per-endpoint families with one plain counter each: [family, read]. The
 * counters are number fields the data path increments; they are only read here, at scrape time.
 */
const SERVICE_PORT: Array<[FamilyName, RtCounter]> = [
  ['svcproxy_connections_accepted_total', (rt) => rt.accepted],
  ['svcproxy_connections_active', (rt) => rt.active],
  ['svcproxy_dial_failures_total', (rt) => rt.dialFailures],
  ['svcproxy_dial_retries_total', (rt) => rt.dialRetries],
  ['svcproxy_connections_rejected_total', (rt) => rt.rejectedLimit],
  ['svcproxy_no_endpoints_total', (rt) => rt.noEndpoints],
  ['svcproxy_udp_sessions_active', (rt) => rt.udpSessionsActive],
  ['svcproxy_source_range_denied_total', (rt) => rt.sourceRangeDenied],
  ['svcproxy_udp_drops_total', (rt) => rt.udpDrops],
  ['svcproxy_affinity_clients', (rt) => rt.balancer.affinityEntries],
  ['svcproxy_endpoint_ejections_total', (rt) => rt.ejectionsTotal],
  ['svcproxy_endpoints_ejected', (rt) => count(rt, (b) => b.ejected)],
  ['svcproxy_endpoints_check_down', (rt) => count(rt, (b) => b.check === 'down' || b.check === 'pending')],
]

/** Endpoints of the port's whole set (ejected and checked-down ones included) for which `f` holds. */
function count (rt: ServicePortRuntime, f: (b: Backend) => boolean): number {
  let n = 0
  for (const b of rt.endpoints) if (f(b)) n++
  return n
}

const ENDPOINT: Array<[FamilyName, EpCounter]> = [
  ['svcproxy_endpoint_connections_total', (b) => b.accepted],
  ['svcproxy_endpoint_connections_active', (b) => b.active],
  ['svcproxy_endpoint_dial_failures_total', (b) => b.dialFailures],
  ['svcproxy_endpoint_affinity_hits_total', (b) => b.affinityHits],
]

/** proxy.faults: per port and toxic type, only ports that have (or had) toxics have series. */
function faultFamilies (x: Exposition, rts: ServicePortRuntime[], rtLabels: string[]): void {
  open(x, 'svcproxy_faults_active')
  rts.forEach((rt, i) => { for (const [type, n] of rt.faults?.activeByType() ?? []) x.sample(`${rtLabels[i] ?? ''},type="${type}"`, n) })
  const counted: Array<[FamilyName, (c: FaultCounts) => Map<string, number>]> = [
    ['svcproxy_fault_connections_total', (c) => c.applied],
    ['svcproxy_fault_bytes_total', (c) => c.bytes],
    ['svcproxy_fault_datagrams_total', (c) => c.datagrams],
  ]
  for (const [name, read] of counted) {
    open(x, name)
    rts.forEach((rt, i) => { for (const [type, n] of rt.faultCounts === null ? [] : read(rt.faultCounts)) x.sample(`${rtLabels[i] ?? ''},type="${type}"`, n) })
  }
}

/** Opens a family with the type and help the table declares for it (lib/admin/families.ts). */
function open (x: Exposition, name: FamilyName): Exposition {
  const f: MetricFamily = METRIC_FAMILIES[name]
  return x.family(name, f.type, f.help)
}

export interface MetricsInput {
  proxy: ServiceProxy
  health: () => SourceHealth
  process: ProcessStats
}

/** One full scrape in the Prometheus text format. */
export async function renderMetrics ({ proxy, health, process: proc }: MetricsInput): Promise<string> {
  const x = new Exposition()
  const rts = [...proxy.dataplane.runtimes.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  // Label strings are built once per scrape per series, never on the data path.
  const rtLabels = rts.map((rt) => labels({ namespace: rt.namespace, service: rt.service, port: rt.portLabel }))
  const eps = rts.map((rt, i) => rt.endpoints.map((b) => ({ b, l: `${rtLabels[i] ?? ''},${labels({ endpoint: b.key })}` })))

  for (const [name, read] of SERVICE_PORT) {
    open(x, name)
    rts.forEach((rt, i) => x.sample(rtLabels[i] ?? '', read(rt)))
  }
  open(x, 'svcproxy_bytes_total')
  rts.forEach((rt, i) => {
    x.sample(`${rtLabels[i] ?? ''},direction="upstream"`, rt.bytesUp)
    x.sample(`${rtLabels[i] ?? ''},direction="downstream"`, rt.bytesDown)
  })
  open(x, 'svcproxy_udp_datagrams_total')
  rts.forEach((rt, i) => {
    x.sample(`${rtLabels[i] ?? ''},direction="upstream"`, rt.udpDatagramsUp)
    x.sample(`${rtLabels[i] ?? ''},direction="downstream"`, rt.udpDatagramsDown)
  })
  open(x, 'svcproxy_endpoints')
  rts.forEach((rt, i) => {
    let ready = 0
    for (const b of rt.endpoints) if (b.ready) ready++
    x.sample(`${rtLabels[i] ?? ''},ready="true"`, ready)
    x.sample(`${rtLabels[i] ?? ''},ready="false"`, rt.endpoints.length - ready)
  })
  open(x, 'svcproxy_health_checks_total')
  rts.forEach((rt, i) => {
    x.sample(`${rtLabels[i] ?? ''},result="pass"`, rt.checksPassed)
    x.sample(`${rtLabels[i] ?? ''},result="fail"`, rt.checksFailed)
  })
  faultFamilies(x, rts, rtLabels)
  open(x, 'svcproxy_self_loop_endpoints')
  rts.forEach((rt, i) => x.sample(rtLabels[i] ?? '', rt.selfLoopEndpoints))
  // Only service ports that carried a connection: 9 to 13 buckets each adds up with many ports.
  open(x, 'svcproxy_dial_duration_seconds')
  rts.forEach((rt, i) => { if (rt.dialDuration.count > 0) x.histogram(rtLabels[i] ?? '', rt.dialDuration) })
  open(x, 'svcproxy_connection_duration_seconds')
  rts.forEach((rt, i) => { if (rt.connectionDuration.count > 0) x.histogram(rtLabels[i] ?? '', rt.connectionDuration) })

  for (const [name, read] of ENDPOINT) {
    open(x, name)
    for (const list of eps) for (const { b, l } of list) x.sample(l, read(b))
  }
  open(x, 'svcproxy_endpoint_bytes_total')
  for (const list of eps) {
    for (const { b, l } of list) {
      x.sample(`${l},direction="upstream"`, b.bytesUp)
      x.sample(`${l},direction="downstream"`, b.bytesDown)
    }
  }
  open(x, 'svcproxy_endpoint_udp_datagrams_total')
  for (const list of eps) {
    for (const { b, l } of list) {
      x.sample(`${l},direction="upstream"`, b.udpDatagramsUp)
      x.sample(`${l},direction="downstream"`, b.udpDatagramsDown)
    }
  }

  // Control plane.
  const stats = proxy.syncStats
  open(x, 'svcproxy_sync_duration_seconds')
  x.histogram('', stats.duration)
  open(x, 'svcproxy_last_sync_timestamp_seconds')
  x.sample('', stats.lastSyncAt / 1000)
  open(x, 'svcproxy_sync_errors_total')
  x.sample('', stats.errors)
  open(x, 'svcproxy_table_revision')
  x.sample('', proxy.table.revision)
  open(x, 'svcproxy_accept_errors_total')
  x.sample('', proxy.limits.acceptErrors)
  open(x, 'svcproxy_service_ports')
  x.sample('', rts.length)
  const byState = { binding: 0, listening: 0, error: 0, closed: 0 }
  for (const fe of proxy.dataplane.frontends.values()) byState[fe.state]++
  open(x, 'svcproxy_listeners')
  for (const [state, n] of Object.entries(byState)) x.sample(`state="${state}"`, n)
  open(x, 'svcproxy_frontends_in_error')
  x.sample('', proxy.dataplane.inError)
  open(x, 'svcproxy_bind_failures_total')
  x.sample('', proxy.dataplane.bindFailures)
  const h = health()
  const src = labels({ source: h.kind })
  open(x, 'svcproxy_source_synced')
  x.sample(src, h.synced ? 1 : 0)
  open(x, 'svcproxy_source_stale')
  x.sample(src, h.stale ? 1 : 0)
  open(x, 'svcproxy_source_last_synced_timestamp_seconds')
  x.sample(src, h.lastSyncedAt / 1000)
  open(x, 'svcproxy_source_timeouts_total')
  x.sample(src, h.timeouts ?? 0)

  open(x, 'svcproxy_vip_addresses')
  x.sample('', proxy.vips?.size ?? 0)
  open(x, 'svcproxy_vip_errors_total')
  x.sample('', proxy.vips?.errors ?? 0)

  // Process.
  const p = await proc.snapshot()
  open(x, 'svcproxy_event_loop_delay_seconds')
  x.sample('quantile="0.5"', p.loopDelayP50)
  x.sample('quantile="0.99"', p.loopDelayP99)
  x.sample('quantile="1"', p.loopDelayMax)
  open(x, 'svcproxy_heap_used_bytes')
  x.sample('', p.heapUsed)
  open(x, 'svcproxy_heap_total_bytes')
  x.sample('', p.heapTotal)
  open(x, 'svcproxy_resident_memory_bytes')
  x.sample('', p.rss)
  open(x, 'svcproxy_cpu_seconds_total')
  x.sample('mode="user"', p.cpuUserSeconds)
  x.sample('mode="system"', p.cpuSystemSeconds)
  if (p.openFds >= 0) {
    open(x, 'svcproxy_open_fds')
    x.sample('', p.openFds)
  }
  open(x, 'svcproxy_start_time_seconds')
  x.sample('', p.startTimeSeconds)

  open(x, 'process_cpu_seconds_total')
  x.sample('', p.cpuUserSeconds + p.cpuSystemSeconds)
  open(x, 'process_resident_memory_bytes')
  x.sample('', p.rss)
  if (p.virtualMemory >= 0) {
    open(x, 'process_virtual_memory_bytes')
    x.sample('', p.virtualMemory)
  }
  if (p.openFds >= 0) {
    open(x, 'process_open_fds')
    x.sample('', p.openFds)
  }
  if (p.maxFds >= 0) {
    open(x, 'process_max_fds')
    x.sample('', p.maxFds)
  }
  open(x, 'process_start_time_seconds')
  x.sample('', p.startTimeSeconds)
  return x.text()
}
