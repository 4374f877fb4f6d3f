import { BlockList } from 'node:net'
import { type Algorithm, Balancer, isAlgorithm } from '../balancer/balancer.js'
import { Backend } from '../balancer/backend.js'
import type { Endpoint } from '../table/endpoints.js'
import type { ServicePortState } from '../table/table.js'
import { LOAD_BALANCER_ANNOTATION, maxConnectionsOf, type ProxyProtocolMode, proxyProtocolOf } from '../model/annotations.js'
import { isLocalAddress } from '../model/ip.js'
import { selfLoopOf } from '../model/self-loop.js'
import { Histogram } from '../util/histogram.js'
import type { FaultCounts, FaultSet } from '../faults/fault-set.js'

/**
 * The live side of one service port: its balancer, its endpoints (Backend objects kept
 * across updates so their counters survive) and its counters. Listeners point at a runtime;
 * an endpoint change swaps the runtime's contents without touching the listeners.
 */
export class ServicePortRuntime {
  readonly id: string
  namespace: string
  service: string
  portName: string
  /** The label value metrics and logs use for the port: its name, or its number when unnamed. */
  portLabel: string
  state: ServicePortState
  readonly balancer: Balancer
  /** Endpoints on this node (traffic policy Local) that take new connections. */
  localEndpoints: Backend[] = []
  /** Every endpoint of the set, ejected or failing a check included; balancer.endpoints holds the eligible ones (refilter). */
  endpoints: Backend[] = []
  private localAll: Backend[] = []
  /** Every Backend of the port by key (the cluster set and this node's serving-and-terminating ones). */
  readonly byKey = new Map<string, Backend>()
  /** Outlier detection: dial failures in a row that eject an endpoint (read on the data path); Infinity when off. */
  ejectAfter = Infinity
  /** Outlier ejection and active checks (frontend/endpoint-health.ts), set up by the data plane. */
  health: PortHealth | null = null
  /** Ejections since start (svcproxy_endpoint_ejections_total); active checks that passed and failed. */
  ejectionsTotal = 0
  checksPassed = 0
  checksFailed = 0
  private readonly hostname: string

  accepted = 0
  active = 0
  dialFailures = 0
  dialRetries = 0
  noEndpoints = 0
  bytesUp = 0
  bytesDown = 0
  udpDatagramsUp = 0
  udpDatagramsDown = 0
  udpSessionsActive = 0
  udpDrops = 0
  /** TCP connections reset at once because --max-connections or the service's limit was reached. */
  rejectedLimit = 0
  /** Annotation svcproxy.io/max-connections: TCP connections the service holds open at most, all its ports together; 0 = no limit. */
  maxConnections = 0
  /** Shared by every port of the service (the data plane hands out one per service): its open TCP connections. */
  serviceConnections: { active: number } = { active: 0 }
  /** loadBalancerSourceRanges of a LoadBalancer service: who may reach its load-balancer addresses; null = everyone. */
  sourceRanges: BlockList | null = null
  /** Clients refused there: TCP connections reset, UDP datagrams dropped. */
  sourceRangeDenied = 0
  /** Endpoints left out of the set because they are this port's own address (model/self-loop.ts): never dialled. */
  selfLoopEndpoints = 0
  /** TCP: accept to an endpoint answering (the whole dial ladder), and accept to close; one observation per connection. */
  readonly dialDuration = new Histogram(DIAL_DURATION_BUCKETS)
  readonly connectionDuration = new Histogram(CONNECTION_DURATION_BUCKETS)
  /** Annotation svcproxy.io/proxy-protocol; null: the daemon's --proxy-protocol (ctx.proxyProtocol). See frontend/proxy-protocol.ts. */
  proxyProtocol: ProxyProtocolMode | null = null
  /** When the endpoint set last changed (ms since epoch): one joined, left, or turned ready/terminating. Set by update(), never on the data path. */
  endpointsChangedAt = 0
  /** Toxics on this port (api/faults.ts builds it); null = none: the only check the data path makes. */
  faults: FaultSet | null = null
  /** What toxics did here, by type (svcproxy_fault_*_total); created with the first set. */
  faultCounts: FaultCounts | null = null
  /** The last update() changed the set (the data plane emits 'endpoints' then, when observed). */
  servingChanged = false

  constructor (state: ServicePortState, defaultAlgorithm: Algorithm, hostname: string) {
    this.id = state.id
    this.namespace = state.service.namespace
    this.service = state.service.name
    this.portName = state.port.name
    this.portLabel = state.port.name === '' ? String(state.port.port) : state.port.name
    this.state = state
    this.hostname = hostname
    this.balancer = new Balancer(algorithmOf(state, defaultAlgorithm))
    this.update(state, defaultAlgorithm)
  }

  /** Takes a new state for the same service port. Returns the endpoints that left the set. */
  update (state: ServicePortState, defaultAlgorithm: Algorithm): Backend[] {
    this.state = state
    this.balancer.algorithm = algorithmOf(state, defaultAlgorithm)
    this.maxConnections = maxConnectionsOf(state.service.annotations)
    this.proxyProtocol = proxyProtocolOf(state.service.annotations)
    const svc = state.service
    this.balancer.setAffinity(svc.sessionAffinity === 'ClientIP' ? svc.affinityTimeoutSeconds * 1000 : 0)
    this.sourceRanges = svc.type === 'LoadBalancer' ? allowList(svc.loadBalancerSourceRanges) : null
    const seen = new Set<string>()
    let changed = false
    const keep = (e: Endpoint): Backend => {
      seen.add(e.key)
      const cur = this.byKey.get(e.key)
      if (cur === undefined) {
        const b = new Backend(e.ip, e.port, e.nodeName, e.podName, e.ready, e.key)
        this.byKey.set(e.key, b)
        changed = true
        return b
      }
      const b = e
      if (cur.ready !== b.ready) changed = true
      cur.nodeName = b.nodeName
      cur.podName = b.podName
      cur.ready = b.ready
      return cur
    }
    // An endpoint at this port's own address would be dialled by its own listener, again and
    // again (one request made 9,991 nested connections): it is left out, and counted.
    const notSelf = (e: Endpoint): boolean => selfLoopOf(svc, state.port, e.ip, e.port, isLocalAddress) === ''
    const eps = state.endpoints.filter(notSelf)
    this.selfLoopEndpoints = state.endpoints.length - eps.length
    const next = eps.map(keep)
    // Traffic policy Local applies the KEP-1669 fallback per node, as kube-proxy does: this
    // node's ready endpoints, else this node's serving-and-terminating ones, never another
    // node's, even when the cluster as a whole still has ready endpoints.
    let local = next.filter((b) => b.ready && b.nodeName === this.hostname)
    if (local.length === 0) {
      local = (state.servingTerminating ?? []).filter((b) => b.nodeName === this.hostname && notSelf(b)).map(keep)
    }
    const gone: Backend[] = []
    for (const [k, b] of this.byKey) {
      if (!seen.has(k)) {
        this.byKey.delete(k)
        gone.push(b)
      }
    }
    this.endpoints = next
    this.localAll = local
    this.refilter()
    this.servingChanged = changed || gone.length > 0 || this.endpointsChangedAt === 0
    if (this.servingChanged) this.endpointsChangedAt = Date.now()
    return gone
  }

  /**
   * Gives the balancer the endpoints that take new connections (not ejected, not failing a
   * check; never none while there are any: endpoint-health.ts eligible). True when its set changed.
   */
  refilter (): boolean {
    const local = eligible(this.localAll)
    const changed = this.balancer.setEndpoints(eligible(this.endpoints), local)
    this.localEndpoints = local
    return changed
  }

  /** True if `b` takes new connections (is in the balancer's set). Control path: O(1) unless some endpoint is out. */
  inRotation (b: Backend): boolean {
    const eps = this.balancer.endpoints
    return eps === this.endpoints || eps.includes(b) || this.localEndpoints.includes(b)
  }

  /** The runtime is gone: stops its ejection timer and active checks. */
  close (): void {
    this.health?.close()
    this.health = null
  }
}

/**
 * What the runtime and the data path need of a port's endpoint health; frontend/endpoint-health.ts
 * implements it (declared here so that the runtime does not import it: no import cycle).
 */
export interface PortHealth {
  /** `b` failed its dials `ejectAfter` times in a row or more. */
  failedInARow (b: Backend, error: string): void
  /** Endpoints ejected now. */
  ejectedCount (): number
  /** The active checker, when the service asks for checks. */
  readonly checker: { stop (): void } | null
  close (): void
}

/**
 * The endpoints of `list` that take new connections: not ejected and not failing an active
 * check. Never empty when `list` is not: if checks fail everywhere, the ones not ejected stay
 * (then all of them) — a port is not made dark by its own health checks.
 * Returns `list` itself when nothing is excluded (the common case allocates nothing).
 */
export function eligible (list: Backend[]): Backend[] {
  let excluded = false
  for (const b of list) if (b.ejected || b.check === 'down' || b.check === 'pending') { excluded = true; break }
  if (!excluded) return list
  const ok = list.filter((b) => !b.ejected && b.check !== 'down' && b.check !== 'pending')
  if (ok.length > 0) return ok
  const notEjected = list.filter((b) => !b.ejected)
  return notEjected.length > 0 ? notEjected : list
}

/** Seconds: 0.5 ms to ~4 s (the dial ladder gives up after 3.75 s). */
export const DIAL_DURATION_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4]
/** Seconds: 1 ms to an hour. */
export const CONNECTION_DURATION_BUCKETS: readonly number[] = [0.001, 0.01, 0.1, 1, 10, 60, 300, 1800, 3600]

function algorithmOf (state: ServicePortState, dflt: Algorithm): Algorithm {
  const a = state.service.annotations[LOAD_BALANCER_ANNOTATION]
  return isAlgorithm(a) ? a : dflt
}

/** The CIDRs (validated by the model) as one matcher; null when there are none. */
function allowList (cidrs: string[]): BlockList | null {
  if (cidrs.length === 0) return null
  const list = new BlockList()
  for (const c of cidrs) {
    const slash = c.indexOf('/')
    const ip = c.slice(0, slash)
    list.addSubnet(ip, Number(c.slice(slash + 1)), ip.includes(':') ? 'ipv6' : 'ipv4')
  }
  return list
}

/** True if `ip` may reach the load-balancer addresses of `rt`'s service (counted when not). */
export function sourceAllowed (rt: ServicePortRuntime, ip: string): boolean {
  const r = rt.sourceRanges
  if (r === null || r.check(ip, ip.includes(':') ? 'ipv6' : 'ipv4')) return true
  rt.sourceRangeDenied++
  return false
}
