import type { ServiceProxy } from '../api/service-proxy.js'
import type { ServicePortRuntime } from '../frontend/runtime.js'
import type { SourceHealth } from '../sources/health.js'
import type { Backend } from '../balancer/backend.js'
import { Exposition, labels } from './metrics.js'
import type { ProcessStats } from './process-stats.js'

type RtCounter = (rt: ServicePortRuntime) => number
type EpCounter = (b: Backend) => number

/**
 * Per-service-port families: [name, type, help, read]. The counters are plain number fields
 * the data path increments; they are only read here, at scrape time.
 */
const SERVICE_PORT: Array<[string, 'counter' | 'gauge', string, RtCounter]> = [
  ['svcproxy_connections_accepted_total', 'counter', 'TCP connections accepted on the service port (every frontend), whether or not an endpoint took them.', (rt) => rt.accepted],
  ['svcproxy_connections_active', 'gauge', 'TCP connections open on the service port, dialing or established.', (rt) => rt.active],
  ['svcproxy_dial_failures_total', 'counter', 'Dial attempts to an endpoint that failed (refused, reset or timed out).', (rt) => rt.dialFailures],
  ['svcproxy_dial_retries_total', 'counter', 'Dial attempts moved on to the next endpoint after a failure.', (rt) => rt.dialRetries],
  ['svcproxy_connections_rejected_total', 'counter', 'TCP connections reset at accept because --max-connections or the service\'s svcproxy.io/max-connections limit was reached.', (rt) => rt.rejectedLimit],
  ['svcproxy_no_endpoints_total', 'counter', 'Connections reset because the service port had no eligible endpoint.', (rt) => rt.noEndpoints],
  ['svcproxy_udp_sessions_active', 'gauge', 'UDP sessions (client address to endpoint) open on the service port.', (rt) => rt.udpSessionsActive],
  ['svcproxy_source_range_denied_total', 'counter', 'Clients outside a LoadBalancer service\'s loadBalancerSourceRanges, at its load-balancer addresses: TCP connections reset, UDP datagrams dropped.', (rt) => rt.sourceRangeDenied],
  ['svcproxy_udp_drops_total', 'counter', 'UDP datagrams dropped: no endpoint, session limit reached, send error, or a client outside loadBalancerSourceRanges.', (rt) => rt.udpDrops],
  ['svcproxy_affinity_clients', 'gauge', 'Client IPs pinned to an endpoint by sessionAffinity ClientIP (expired pins are swept lazily).', (rt) => rt.balancer.affinityEntries],
]

const ENDPOINT: Array<[string, 'counter' | 'gauge', string, EpCounter]> = [
  ['svcproxy_endpoint_connections_total', 'counter', 'TCP connections established to the endpoint.', (b) => b.accepted],
  ['svcproxy_endpoint_connections_active', 'gauge', 'TCP connections to the endpoint still open.', (b) => b.active],
  ['svcproxy_endpoint_dial_failures_total', 'counter', 'Failed dial attempts to the endpoint.', (b) => b.dialFailures],
  ['svcproxy_endpoint_affinity_hits_total', 'counter', 'Connections or UDP sessions sent to the endpoint because the client was pinned to it (sessionAffinity ClientIP).', (b) => b.affinityHits],
]

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
  const eps = rts.map((rt, i) => rt.balancer.endpoints.map((b) => ({ b, l: `${rtLabels[i] ?? ''},${labels({ endpoint: b.key })}` })))

  for (const [name, type, help, read] of SERVICE_PORT) {
    x.family(name, type, help)
    rts.forEach((rt, i) => x.sample(rtLabels[i] ?? '', read(rt)))
  }
  x.family('svcproxy_bytes_total', 'counter', 'Bytes proxied on the service port (TCP payload and UDP datagrams). direction: upstream = client to endpoint, downstream = endpoint to client.')
  rts.forEach((rt, i) => {
    x.sample(`${rtLabels[i] ?? ''},direction="upstream"`, rt.bytesUp)
    x.sample(`${rtLabels[i] ?? ''},direction="downstream"`, rt.bytesDown)
  })
  x.family('svcproxy_udp_datagrams_total', 'counter', 'UDP datagrams proxied on the service port. direction: upstream = client to endpoint, downstream = endpoint to client.')
  rts.forEach((rt, i) => {
    x.sample(`${rtLabels[i] ?? ''},direction="upstream"`, rt.udpDatagramsUp)
    x.sample(`${rtLabels[i] ?? ''},direction="downstream"`, rt.udpDatagramsDown)
  })
  x.family('svcproxy_endpoints', 'gauge', 'Endpoints in the service port\'s set. ready="false": serving-and-terminating fallback endpoints.')
  rts.forEach((rt, i) => {
    let ready = 0
    for (const b of rt.balancer.endpoints) if (b.ready) ready++
    x.sample(`${rtLabels[i] ?? ''},ready="true"`, ready)
    x.sample(`${rtLabels[i] ?? ''},ready="false"`, rt.balancer.endpoints.length - ready)
  })

  for (const [name, type, help, read] of ENDPOINT) {
    x.family(name, type, help)
    for (const list of eps) for (const { b, l } of list) x.sample(l, read(b))
  }
  x.family('svcproxy_endpoint_bytes_total', 'counter', 'Bytes proxied to and from the endpoint. direction: upstream = client to endpoint, downstream = endpoint to client.')
  for (const list of eps) {
    for (const { b, l } of list) {
      x.sample(`${l},direction="upstream"`, b.bytesUp)
      x.sample(`${l},direction="downstream"`, b.bytesDown)
    }
  }
  x.family('svcproxy_endpoint_udp_datagrams_total', 'counter', 'UDP datagrams proxied to and from the endpoint.')
  for (const list of eps) {
    for (const { b, l } of list) {
      x.sample(`${l},direction="upstream"`, b.udpDatagramsUp)
      x.sample(`${l},direction="downstream"`, b.udpDatagramsDown)
    }
  }

  // Control plane.
  const stats = proxy.syncStats
  x.family('svcproxy_sync_duration_seconds', 'histogram', 'Time from the start of a table write (apply, replace, delete, file reload) until the data path serves it. Counterpart of kubeproxy_sync_proxy_rules_duration_seconds.')
  x.histogram('', stats.duration)
  x.family('svcproxy_last_sync_timestamp_seconds', 'gauge', 'Unix time of the last successful table write; 0 before the first.')
  x.sample('', stats.lastSyncAt / 1000)
  x.family('svcproxy_sync_errors_total', 'counter', 'Table writes rejected or failed (invalid manifest, conflicting object); the last good state keeps serving.')
  x.sample('', stats.errors)
  x.family('svcproxy_table_revision', 'gauge', 'Revision of the served table; increases by one per successful write.')
  x.sample('', proxy.table.revision)
  x.family('svcproxy_accept_errors_total', 'counter', 'Accepts that failed for lack of file descriptors (EMFILE/ENFILE); the connection was closed at once and the listener kept serving.')
  x.sample('', proxy.limits.acceptErrors)
  x.family('svcproxy_service_ports', 'gauge', 'Service ports in the table.')
  x.sample('', rts.length)
  const byState = { binding: 0, listening: 0, error: 0, closed: 0 }
  for (const fe of proxy.dataplane.frontends.values()) byState[fe.state]++
  x.family('svcproxy_listeners', 'gauge', 'Service listeners (one per exposed address and port) by state; state="error" could not bind and is retried on the next change.')
  for (const [state, n] of Object.entries(byState)) x.sample(`state="${state}"`, n)
  const h = health()
  const src = labels({ source: h.kind })
  x.family('svcproxy_source_synced', 'gauge', '1 once the source delivered its first full state (/readyz), else 0.')
  x.sample(src, h.synced ? 1 : 0)
  x.family('svcproxy_source_stale', 'gauge', '1 while the served state may be out of date (/healthz answers 503), else 0.')
  x.sample(src, h.stale ? 1 : 0)
  x.family('svcproxy_source_last_synced_timestamp_seconds', 'gauge', 'Unix time the source last confirmed the served state; 0 before the first.')
  x.sample(src, h.lastSyncedAt / 1000)

  // Process.
  const p = await proc.snapshot()
  x.family('svcproxy_event_loop_delay_seconds', 'gauge', 'Event-loop delay since the previous scrape, by quantile (1 = max). High values delay every connection.')
  x.sample('quantile="0.5"', p.loopDelayP50)
  x.sample('quantile="0.99"', p.loopDelayP99)
  x.sample('quantile="1"', p.loopDelayMax)
  x.family('svcproxy_heap_used_bytes', 'gauge', 'V8 heap in use.')
  x.sample('', p.heapUsed)
  x.family('svcproxy_heap_total_bytes', 'gauge', 'V8 heap reserved.')
  x.sample('', p.heapTotal)
  x.family('svcproxy_resident_memory_bytes', 'gauge', 'Resident set size.')
  x.sample('', p.rss)
  x.family('svcproxy_cpu_seconds_total', 'counter', 'CPU time used by the process. mode: user or system.')
  x.sample('mode="user"', p.cpuUserSeconds)
  x.sample('mode="system"', p.cpuSystemSeconds)
  if (p.openFds >= 0) {
    x.family('svcproxy_open_fds', 'gauge', 'Open file descriptors (each proxied TCP connection holds two).')
    x.sample('', p.openFds)
  }
  x.family('svcproxy_start_time_seconds', 'gauge', 'Unix time the process started.')
  x.sample('', p.startTimeSeconds)
  return x.text()
}
