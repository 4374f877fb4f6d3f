import type { MetricType } from './metrics.js'

/** One metric family as /metrics declares it. Names, types, labels and help are what dashboards read. */
export interface MetricFamily {
  type: MetricType
  /** Label names of its series, in the order they are written (a histogram's `le` is implied). */
  labels: readonly string[]
  /** The HELP line. */
  help: string
}

const PORT = ['namespace', 'service', 'port'] as const
const ENDPOINT = [...PORT, 'endpoint'] as const

/**
 * Every family /metrics can expose, in the order docs/operations.md lists them. collect.ts opens
 * families only through this table (a name outside it does not compile);
 * test/registries.test.ts fails when the table, a scrape and the docs disagree.
 */
export const METRIC_FAMILIES = {
  // Per service port.
  svcproxy_connections_accepted_total: { type: 'counter', labels: PORT, help: 'TCP connections accepted on the service port (every frontend), whether or not an endpoint took them.' },
  svcproxy_connections_active: { type: 'gauge', labels: PORT, help: 'TCP connections open on the service port, dialing or established.' },
  svcproxy_dial_failures_total: { type: 'counter', labels: PORT, help: 'Dial attempts to an endpoint that failed (refused, reset or timed out).' },
  svcproxy_dial_retries_total: { type: 'counter', labels: PORT, help: 'Dial attempts moved on to the next endpoint after a failure.' },
  svcproxy_connections_rejected_total: { type: 'counter', labels: PORT, help: 'TCP connections reset at accept because --max-connections or the service\'s svcproxy.io/max-connections limit was reached.' },
  svcproxy_no_endpoints_total: { type: 'counter', labels: PORT, help: 'Connections reset because the service port had no eligible endpoint.' },
  svcproxy_bytes_total: { type: 'counter', labels: [...PORT, 'direction'], help: 'Bytes proxied on the service port (TCP payload and UDP datagrams). direction: upstream = client to endpoint, downstream = endpoint to client.' },
  svcproxy_udp_datagrams_total: { type: 'counter', labels: [...PORT, 'direction'], help: 'UDP datagrams proxied on the service port. direction: upstream = client to endpoint, downstream = endpoint to client.' },
  svcproxy_udp_sessions_active: { type: 'gauge', labels: PORT, help: 'UDP sessions (client address to endpoint) open on the service port.' },
  svcproxy_udp_drops_total: { type: 'counter', labels: PORT, help: 'UDP datagrams dropped: no endpoint, session limit reached, send error, or a client outside loadBalancerSourceRanges.' },
  svcproxy_source_range_denied_total: { type: 'counter', labels: PORT, help: 'Clients outside a LoadBalancer service\'s loadBalancerSourceRanges, at its load-balancer addresses: TCP connections reset, UDP datagrams dropped.' },
  svcproxy_affinity_clients: { type: 'gauge', labels: PORT, help: 'Client IPs pinned to an endpoint by sessionAffinity ClientIP (expired pins are swept lazily).' },
  svcproxy_endpoints: { type: 'gauge', labels: [...PORT, 'ready'], help: 'Endpoints in the service port\'s set. ready="false": serving-and-terminating fallback endpoints.' },
  svcproxy_self_loop_endpoints: { type: 'gauge', labels: PORT, help: 'Endpoints left out of the service port\'s set because they are its own address (clusterIP, externalIP or load-balancer IP at the port, a node address at the nodePort): never dialled.' },
  svcproxy_endpoint_ejections_total: { type: 'counter', labels: PORT, help: 'Endpoints ejected by outlier detection (their dials failed N times in a row); each ejection counted.' },
  svcproxy_endpoints_ejected: { type: 'gauge', labels: PORT, help: 'Endpoints ejected by outlier detection now: they get no new connections until their ejection time is over.' },
  svcproxy_health_checks_total: { type: 'counter', labels: [...PORT, 'result'], help: 'Active health checks run against the service port\'s endpoints (annotation svcproxy.io/health-check). result: pass or fail.' },
  svcproxy_endpoints_check_down: { type: 'gauge', labels: PORT, help: 'Endpoints whose active health check fails now (or has not passed yet): they get no new connections.' },
  svcproxy_faults_active: { type: 'gauge', labels: [...PORT, 'type'], help: 'Faults (toxics, proxy.faults) applying to the service port now, by type: its own, its service\'s and its endpoints\'. Only ports with toxics have series.' },
  svcproxy_fault_connections_total: { type: 'counter', labels: [...PORT, 'type'], help: 'TCP connections and UDP sessions a toxic was applied to (after its toxicity roll), by type; down: dials it failed.' },
  svcproxy_fault_bytes_total: { type: 'counter', labels: [...PORT, 'type'], help: 'Bytes a toxic delayed, throttled, sliced, dropped, held or cut off, by type (a byte counts once per toxic it went through).' },
  svcproxy_fault_datagrams_total: { type: 'counter', labels: [...PORT, 'type'], help: 'UDP datagrams a toxic dropped, delayed, duplicated or reordered, by type.' },
  svcproxy_dial_duration_seconds: { type: 'histogram', labels: PORT, help: 'TCP: time from accept until an endpoint answered, the whole dial ladder included; one observation per connection that reached an endpoint.' },
  svcproxy_connection_duration_seconds: { type: 'histogram', labels: PORT, help: 'TCP: time from accept until both sides closed; one observation per connection.' },

  // Per endpoint.
  svcproxy_endpoint_connections_total: { type: 'counter', labels: ENDPOINT, help: 'TCP connections established to the endpoint.' },
  svcproxy_endpoint_connections_active: { type: 'gauge', labels: ENDPOINT, help: 'TCP connections to the endpoint still open.' },
  svcproxy_endpoint_dial_failures_total: { type: 'counter', labels: ENDPOINT, help: 'Failed dial attempts to the endpoint.' },
  svcproxy_endpoint_affinity_hits_total: { type: 'counter', labels: ENDPOINT, help: 'Connections or UDP sessions sent to the endpoint because the client was pinned to it (sessionAffinity ClientIP).' },
  svcproxy_endpoint_bytes_total: { type: 'counter', labels: [...ENDPOINT, 'direction'], help: 'Bytes proxied to and from the endpoint. direction: upstream = client to endpoint, downstream = endpoint to client.' },
  svcproxy_endpoint_udp_datagrams_total: { type: 'counter', labels: [...ENDPOINT, 'direction'], help: 'UDP datagrams proxied to and from the endpoint.' },

  // Control plane.
  svcproxy_sync_duration_seconds: { type: 'histogram', labels: [], help: 'Time from the start of a table write (apply, replace, delete, file reload) until the data path serves it. Counterpart of kubeproxy_sync_proxy_rules_duration_seconds.' },
  svcproxy_last_sync_timestamp_seconds: { type: 'gauge', labels: [], help: 'Unix time of the last successful table write; 0 before the first.' },
  svcproxy_sync_errors_total: { type: 'counter', labels: [], help: 'Table writes rejected or failed (invalid manifest, conflicting object); the last good state keeps serving.' },
  svcproxy_table_revision: { type: 'gauge', labels: [], help: 'Revision of the served table; increases by one per successful write.' },
  svcproxy_accept_errors_total: { type: 'counter', labels: [], help: 'Out-of-descriptor episodes (EMFILE/ENFILE) on the accept path, each counted once however many accepts or dials failed in it, and any other failed accept; the listeners kept serving.' },
  svcproxy_service_ports: { type: 'gauge', labels: [], help: 'Service ports in the table.' },
  svcproxy_listeners: { type: 'gauge', labels: ['state'], help: 'Service listeners (one per exposed address and port) by state; state="error" could not bind and is retried with backoff.' },
  svcproxy_frontends_in_error: { type: 'gauge', labels: [], help: 'Service listeners that could not bind (EADDRINUSE, EADDRNOTAVAIL, ...) and are being retried with backoff; /readyz answers 503 while it is not 0.' },
  svcproxy_bind_failures_total: { type: 'counter', labels: [], help: 'Service listeners that failed to bind, counted once per failure (not once per retry) until they bind or are removed.' },
  svcproxy_source_synced: { type: 'gauge', labels: ['source'], help: '1 once the source delivered its first full state (/readyz), else 0.' },
  svcproxy_source_stale: { type: 'gauge', labels: ['source'], help: '1 while the served state may be out of date (/healthz answers 503), else 0.' },
  svcproxy_source_last_synced_timestamp_seconds: { type: 'gauge', labels: ['source'], help: 'Unix time the source last confirmed the served state; 0 before the first.' },
  svcproxy_source_timeouts_total: { type: 'counter', labels: ['source'], help: 'Requests to the source (Redis: store commands) that got no answer within their deadline; each marks the source stale and reconnects.' },
  svcproxy_vip_addresses: { type: 'gauge', labels: [], help: 'Service addresses held on the --vip-interface link (0 without it).' },
  svcproxy_vip_errors_total: { type: 'counter', labels: [], help: 'Service addresses that could not be added to or removed from the --vip-interface link; a frontend on an address not added cannot bind.' },

  // Process.
  svcproxy_event_loop_delay_seconds: { type: 'gauge', labels: ['quantile'], help: 'Event-loop delay since the previous scrape, by quantile (1 = max). High values delay every connection.' },
  svcproxy_heap_used_bytes: { type: 'gauge', labels: [], help: 'V8 heap in use.' },
  svcproxy_heap_total_bytes: { type: 'gauge', labels: [], help: 'V8 heap reserved.' },
  svcproxy_resident_memory_bytes: { type: 'gauge', labels: [], help: 'Resident set size.' },
  svcproxy_cpu_seconds_total: { type: 'counter', labels: ['mode'], help: 'CPU time used by the process. mode: user or system.' },
  // Linux only: absent where /proc/self/fd does not exist.
  svcproxy_open_fds: { type: 'gauge', labels: [], help: 'Open file descriptors (each proxied TCP connection holds two).' },
  svcproxy_start_time_seconds: { type: 'gauge', labels: [], help: 'Unix time the process started.' },

  // Process, with the names of Prometheus's process collectors (dashboards for any exporter read these).
  process_cpu_seconds_total: { type: 'counter', labels: [], help: 'Total user and system CPU time spent in seconds.' },
  process_resident_memory_bytes: { type: 'gauge', labels: [], help: 'Resident memory size in bytes.' },
  // Linux only (/proc/self): absent elsewhere.
  process_virtual_memory_bytes: { type: 'gauge', labels: [], help: 'Virtual memory size in bytes.' },
  process_open_fds: { type: 'gauge', labels: [], help: 'Number of open file descriptors.' },
  process_max_fds: { type: 'gauge', labels: [], help: 'Maximum number of open file descriptors.' },
  process_start_time_seconds: { type: 'gauge', labels: [], help: 'Start time of the process since unix epoch in seconds.' },
} as const satisfies Record<string, MetricFamily>

export type FamilyName = keyof typeof METRIC_FAMILIES
