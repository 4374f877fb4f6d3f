import type { EndpointStatus, FrontendStatus, ServicePortStatus, ServiceProxy } from '../api/service-proxy.js'
import type { Backend } from '../balancer/backend.js'
import type { SourceHealth } from '../sources/health.js'
import type { Rate, RateWindow } from './rates.js'

/**
 * /v1/stats: what /v1/services says, plus what a person watching wants at a glance: a state per
 * service port and endpoint, every per-port counter /metrics has, per-second rates and the sync
 * source's health. The stats page (GET /) and `svcproxy status --watch` read it; the schema is
 * in docs/operations.md and stats-serialize.ts.
 */

/**
 * `ready`, or `terminating`: a serving-and-terminating endpoint used because none is ready (KEP-1669);
 * `ejected` (outlier detection) or `check-down` (its active check fails): no new connections (docs/health.md).
 */
export type EndpointState = 'ready' | 'terminating' | 'ejected' | 'check-down'

/**
 * `up`: listening with ready endpoints; `degraded`: only terminating endpoints, or a listener
 * still binding; `no-endpoints`: connections are reset; `error`: a listener could not bind.
 */
export type ServicePortState = 'up' | 'degraded' | 'no-endpoints' | 'error'

export interface StatsEndpoint extends EndpointStatus, Rate {
  state: EndpointState
  podName: string
  affinityHits: number
  udpDatagramsUp: number
  udpDatagramsDown: number
}

export interface StatsServicePort extends Omit<ServicePortStatus, 'endpoints'>, Rate {
  state: ServicePortState
  /** UDP sessions open (also counted in `active`, as /v1/services counts them). */
  udpSessions: number
  dialRetries: number
  /** Reset at accept: --max-connections or svcproxy.io/max-connections reached. */
  rejected: number
  noEndpoints: number
  sourceRangeDenied: number
  udpDrops: number
  udpDatagramsUp: number
  udpDatagramsDown: number
  /** When the endpoint set last changed (ms since epoch); 0 when the data plane has not taken the port yet. */
  endpointsChangedAt: number
  endpoints: StatsEndpoint[]
}

export interface StatsSource {
  /** `file`, `redis` or `api`. */
  kind: string
  synced: boolean
  stale: boolean
  /** Why it is stale or what went wrong last ('' when all is well). */
  reason: string
  /** Source revision last applied. */
  revision: number
  /** When the source last confirmed the served state (ms since epoch); 0 before. */
  lastSyncedAt: number
  /** `time - lastSyncedAt`: how old that confirmation is; -1 before the first. */
  lagMs: number
  /** Table writes rejected or failed (svcproxy_sync_errors_total). */
  syncErrors: number
}

export interface StatsTotals extends Rate {
  servicePorts: number
  active: number
  dialFailures: number
  rejected: number
}

export interface StatsDoc {
  /** Server time of this answer (ms since epoch): ages on the page are taken against it. */
  time: number
  /** Table revision served. */
  revision: number
  /** Length of the window the rates were measured over (ms); 0 until a second request closed one. */
  windowMs: number
  source: StatsSource
  totals: StatsTotals
  services: StatsServicePort[]
}

/** One /v1/stats answer. `rates` must have begun this request (RateWindow.begin). */
export function buildStats (proxy: ServiceProxy, health: SourceHealth, rates: RateWindow, now = Date.now()): StatsDoc {
  const totals: StatsTotals = { servicePorts: 0, active: 0, dialFailures: 0, rejected: 0, connPerSec: 0, bytesUpPerSec: 0, bytesDownPerSec: 0 }
  const services = proxy.status().map((sp): StatsServicePort => {
    const rt = proxy.dataplane.runtimes.get(sp.id)
    const backends = new Map<string, Backend>()
    for (const b of rt?.endpoints ?? []) backends.set(b.key, b)
    // Object literals with every field spelled out: one shape per kind, no spread (spreading
    // 30 fields made V8 build dictionary objects, 50x slower with 1,000 service ports).
    const endpoints = sp.endpoints.map((e): StatsEndpoint => {
      const b = backends.get(e.endpoint)
      const r = rates.rate(`${sp.id} ${e.endpoint}`, e)
      return {
        endpoint: e.endpoint,
        nodeName: e.nodeName,
        podName: b?.podName ?? '',
        ready: e.ready,
        state: e.ejected ? 'ejected' : !e.eligible && e.check !== 'none' ? 'check-down' : e.ready ? 'ready' : 'terminating',
        active: e.active,
        accepted: e.accepted,
        dialFailures: e.dialFailures,
        bytesUp: e.bytesUp,
        bytesDown: e.bytesDown,
        eligible: e.eligible,
        ejected: e.ejected,
        ejectedUntil: e.ejectedUntil,
        ejections: e.ejections,
        consecutiveFailures: e.consecutiveFailures,
        check: e.check,
        affinityHits: b?.affinityHits ?? 0,
        udpDatagramsUp: b?.udpDatagramsUp ?? 0,
        udpDatagramsDown: b?.udpDatagramsDown ?? 0,
        connPerSec: r.connPerSec,
        bytesUpPerSec: r.bytesUpPerSec,
        bytesDownPerSec: r.bytesDownPerSec,
      }
    })
    const r = rates.rate(sp.id, sp)
    const port: StatsServicePort = {
      id: sp.id,
      namespace: sp.namespace,
      name: sp.name,
      port: sp.port,
      protocol: sp.protocol,
      clusterIP: sp.clusterIP,
      type: sp.type,
      algorithm: sp.algorithm,
      sessionAffinity: sp.sessionAffinity,
      proxyProtocol: sp.proxyProtocol,
      faults: sp.faults,
      state: portState(sp.frontends, endpoints),
      frontends: sp.frontends,
      endpoints,
      active: sp.active,
      udpSessions: rt?.udpSessionsActive ?? 0,
      accepted: sp.accepted,
      dialFailures: sp.dialFailures,
      dialRetries: rt?.dialRetries ?? 0,
      rejected: rt?.rejectedLimit ?? 0,
      noEndpoints: rt?.noEndpoints ?? 0,
      sourceRangeDenied: rt?.sourceRangeDenied ?? 0,
      udpDrops: rt?.udpDrops ?? 0,
      bytesUp: sp.bytesUp,
      bytesDown: sp.bytesDown,
      udpDatagramsUp: rt?.udpDatagramsUp ?? 0,
      udpDatagramsDown: rt?.udpDatagramsDown ?? 0,
      endpointsChangedAt: rt?.endpointsChangedAt ?? 0,
      connPerSec: r.connPerSec,
      bytesUpPerSec: r.bytesUpPerSec,
      bytesDownPerSec: r.bytesDownPerSec,
    }
    totals.servicePorts++
    totals.active += port.active
    totals.dialFailures += port.dialFailures
    totals.rejected += port.rejected
    totals.connPerSec += port.connPerSec
    totals.bytesUpPerSec += port.bytesUpPerSec
    totals.bytesDownPerSec += port.bytesDownPerSec
    return port
  })
  rates.end()
  totals.connPerSec = Math.round(totals.connPerSec * 1000) / 1000
  totals.bytesUpPerSec = Math.round(totals.bytesUpPerSec * 1000) / 1000
  totals.bytesDownPerSec = Math.round(totals.bytesDownPerSec * 1000) / 1000
  return {
    time: now,
    revision: proxy.table.revision,
    windowMs: Math.round(rates.lastWindowMs),
    source: {
      kind: health.kind,
      synced: health.synced,
      stale: health.stale,
      reason: health.reason,
      revision: health.revision,
      lastSyncedAt: health.lastSyncedAt,
      lagMs: health.lastSyncedAt > 0 ? Math.max(0, now - health.lastSyncedAt) : -1,
      syncErrors: proxy.syncStats.errors,
    },
    totals,
    services,
  }
}

function portState (frontends: FrontendStatus[], endpoints: StatsEndpoint[]): ServicePortState {
  if (frontends.some((f) => f.state === 'error')) return 'error'
  if (endpoints.length === 0) return 'no-endpoints'
  if (!endpoints.some((e) => e.ready) || frontends.some((f) => f.state !== 'listening')) return 'degraded'
  return 'up'
}
