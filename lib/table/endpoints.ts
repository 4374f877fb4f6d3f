import type { EndpointAddress, EndpointPort, Endpoints, EndpointSlice, EndpointSubset, Pod, Service, ServicePort } from '../model/types.js'
import { ipv4ToInt } from '../model/ip.js'

/**
 * One endpoint (ip:port) of a service port as the table computes it: plain data, no counters.
 * The data plane gives each one a live Backend (balancer/backend.ts) for as long as it stays.
 */
export interface Endpoint {
  /** `ip:port`, `[ip6]:port`. */
  readonly key: string
  readonly ip: string
  readonly port: number
  readonly nodeName: string
  readonly podName: string
  /** false for a serving-and-terminating fallback endpoint. */
  readonly ready: boolean
}

export function endpointKey (ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`
}

/** The objects a service's endpoints are computed from. */
export interface EndpointSources {
  endpoints: Endpoints | undefined
  slices: EndpointSlice[]
  pods: Iterable<Pod>
}

/**
 * Ready backends of one service port, in round-robin order.
 *
 * Precedence, as current kube-proxy: EndpointSlices when any exist for the service, else the
 * v1 Endpoints object, else (selector services only) the matching Running+Ready pods, which
 * is what the endpoints controller would have written.
 *
 * When no endpoint is ready, serving-and-terminating ones are used instead (KEP-1669).
 * Order: by IP (numeric; IPv4 before IPv6), then port. Deterministic, so every node
 * and every restart walks the same sequence.
 */
export function computeBackends (svc: Service, sp: ServicePort, src: EndpointSources): Endpoint[] {
  const { ready, servingTerminating } = computeEndpointSets(svc, sp, src)
  return ready.length > 0 ? ready : servingTerminating
}

/** Both candidate sets, sorted; the data plane needs them apart for traffic policy Local. */
export interface EndpointSets {
  ready: Endpoint[]
  /** Serving and terminating, not ready: used only where no ready endpoint exists (KEP-1669). */
  servingTerminating: Endpoint[]
}

/**
 * The ready and the serving-and-terminating endpoints of one service port. kube-proxy applies
 * the KEP-1669 fallback per locality: with traffic policy Local, a node whose own endpoints are
 * all terminating serves them even when other nodes have ready ones, so the fallback set must
 * survive even when `ready` is not empty.
 */
/** Told of each address the objects name that stays out of both sets, and why (explain() lists them). */
export type ExcludedEndpoint = (ip: string, port: number, nodeName: string, podName: string, why: string) => void

export function computeEndpointSets (svc: Service, sp: ServicePort, src: EndpointSources, excluded?: ExcludedEndpoint): EndpointSets {
  const sets = new Collected()
  const ready = sets.ready
  const fallback = sets.fallback

  if (src.slices.length > 0) {
    for (const slice of src.slices) {
      if (slice.addressType === 'FQDN') continue
      const p = portFor(slice.ports, sp)
      if (p === undefined) continue
      for (const ep of slice.endpoints) {
        const ip = ep.addresses[0]
        if (ip === undefined) continue
        const c = ep.conditions
        if (c.ready || svc.publishNotReadyAddresses) sets.add(ready, ip, p.port, ep.nodeName, ep.podName, true)
        else if (c.serving && c.terminating) sets.add(fallback, ip, p.port, ep.nodeName, ep.podName, false)
        else excluded?.(ip, p.port, ep.nodeName, ep.podName, c.terminating ? 'terminating and not serving' : `not ready (EndpointSlice ${slice.name}: conditions.ready false)`)
      }
    }
  } else if (src.endpoints !== undefined) {
    // Indexed loops: a for-of allocates a result per step until the code is optimized.
    for (let s = 0; s < src.endpoints.subsets.length; s++) {
      const subset = src.endpoints.subsets[s] as EndpointSubset
      const p = portFor(subset.ports, sp)
      if (p === undefined) continue
      for (let i = 0; i < subset.addresses.length; i++) { const a = subset.addresses[i] as EndpointAddress; sets.add(ready, a.ip, p.port, a.nodeName, a.podName, true) }
      if (svc.publishNotReadyAddresses) {
        for (let i = 0; i < subset.notReadyAddresses.length; i++) { const a = subset.notReadyAddresses[i] as EndpointAddress; sets.add(ready, a.ip, p.port, a.nodeName, a.podName, true) }
      } else if (excluded !== undefined) {
        for (const a of subset.notReadyAddresses) excluded(a.ip, p.port, a.nodeName, a.podName, 'not ready (Endpoints notReadyAddresses)')
      }
    }
  } else if (svc.selector !== null) {
    for (const pod of src.pods) {
      if (pod.podIP === '' || !selectorMatches(svc.selector, pod.labels)) continue
      if (pod.phase === 'Succeeded' || pod.phase === 'Failed') {
        excluded?.(pod.podIP, 0, pod.nodeName, pod.name, `pod ${pod.name} has ended (phase ${pod.phase})`)
        continue
      }
      const port = resolveTargetPort(sp, pod)
      if (port === 0) {
        excluded?.(pod.podIP, 0, pod.nodeName, pod.name, `pod ${pod.name}: targetPort ${JSON.stringify(sp.targetPort)} is none of its container ports`)
        continue
      }
      const running = pod.phase === 'Running'
      // As the EndpointSlice controller: publishNotReadyAddresses makes every pod with an IP
      // ready, terminating ones included.
      if (svc.publishNotReadyAddresses || (!pod.terminating && running && pod.ready)) {
        sets.add(ready, pod.podIP, port, pod.nodeName, pod.name, true)
      } else if (pod.terminating && running && pod.ready) {
        sets.add(fallback, pod.podIP, port, pod.nodeName, pod.name, false)
      } else {
        excluded?.(pod.podIP, port, pod.nodeName, pod.name, running ? `not ready (pod ${pod.name})` : `not ready (pod ${pod.name} phase ${pod.phase})`)
      }
    }
  }
  sortBackends(ready)
  sortBackends(fallback)
  return { ready, servingTerminating: fallback }
}

/** The port of an Endpoints subset or a slice that serves `sp` (a loop, not a closure per call). */
function portFor (ports: readonly EndpointPort[], sp: ServicePort): EndpointPort | undefined {
  for (let i = 0; i < ports.length; i++) { const x = ports[i] as EndpointPort; if (x.name === sp.name && x.protocol === sp.protocol) return x }
  return undefined
}

/**
 * The two lists being built, each address once. While few, an address is looked up by ip and port
 * (what its key is made of) in the lists themselves; past those, by key in a Set.
 */
class Collected {
  readonly ready: Endpoint[] = []
  readonly fallback: Endpoint[] = []
  private seen: Set<string> | null = null

  add (list: Endpoint[], ip: string, port: number, nodeName: string, podName: string, isReady: boolean): void {
    const key = this.firstTime(ip, port)
    if (key !== '') list.push({ key, ip, port, nodeName, podName, ready: isReady })
  }

  /** The key of ip:port when it is in neither list yet; '' when it is. */
  private firstTime (ip: string, port: number): string {
    if (this.seen !== null) {
      const key = endpointKey(ip, port)
      if (this.seen.has(key)) return ''
      this.seen.add(key)
      return key
    }
    const { ready, fallback } = this
    for (let i = 0; i < ready.length; i++) { const e = ready[i] as Endpoint; if (e.port === port && e.ip === ip) return '' }
    for (let i = 0; i < fallback.length; i++) { const e = fallback[i] as Endpoint; if (e.port === port && e.ip === ip) return '' }
    const key = endpointKey(ip, port)
    if (ready.length + fallback.length >= 16) {
      this.seen = new Set([key])
      for (const e of ready) this.seen.add(e.key)
      for (const e of fallback) this.seen.add(e.key)
    }
    return key
  }
}

/**
 * Sorts in place. An IPv4 list already in order (as most stores write them) costs one pass that
 * parses each address once; any other list is sorted with compareBackends.
 */
function sortBackends (list: Endpoint[]): void {
  let prev = -1
  let prevPort = 0
  for (let i = 0; i < list.length; i++) {
    const e = list[i] as Endpoint
    const v = e.ip.includes(':') ? -1 : ipv4ToInt(e.ip)
    if (v < prev || v < 0 || (v === prev && e.port < prevPort)) { list.sort(compareBackends); return }
    prev = v
    prevPort = e.port
  }
}

export function selectorMatches (selector: Record<string, string>, labels: Record<string, string>): boolean {
  let any = false
  for (const k of Object.keys(selector)) {
    any = true
    if (!Object.hasOwn(labels, k) || labels[k] !== selector[k]) return false
  }
  // An empty selector selects nothing here: the model turns {} into null (no selector).
  return any
}

/** targetPort for a pod: a number as is, a name through the pod's container ports; 0 = unresolvable. */
export function resolveTargetPort (sp: ServicePort, pod: Pod): number {
  if (typeof sp.targetPort === 'number') return sp.targetPort
  for (const cp of pod.ports) {
    if (cp.name === sp.targetPort && cp.protocol === sp.protocol) return cp.containerPort
  }
  return 0
}

export function compareBackends (a: Endpoint, b: Endpoint): number {
  // The table holds validated addresses only: a colon means IPv6 (no node:net parse per compare).
  const a6 = a.ip.includes(':')
  const b6 = b.ip.includes(':')
  if (a6 !== b6) return a6 ? 1 : -1
  const c = a6 ? compareIPv6(a.ip, b.ip) : ipv4ToInt(a.ip) - ipv4ToInt(b.ip)
  return c !== 0 ? c : a.port - b.port
}


function expandIPv6 (ip: string): string {
  const [head = '', tail] = ip.split('::')
  const h = head === '' ? [] : head.split(':')
  const t = tail === undefined || tail === '' ? [] : tail.split(':')
  const fill = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill('0')
  return [...h, ...fill, ...t].map((g) => g.padStart(4, '0')).join('')
}

function compareIPv6 (a: string, b: string): number {
  const x = expandIPv6(a)
  const y = expandIPv6(b)
  return x < y ? -1 : x > y ? 1 : 0
}
