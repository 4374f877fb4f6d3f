// proxy.explain('ns/name', { port, clientIP }): which endpoint the next connection from a client
// would get, and why every other endpoint would not, from the table's objects and the live
// runtime, without sending traffic and without moving anything (Balancer.peek: no cursor, pin or
// random draw changes). docs/api.md#explain, docs/testing.md.
import { BlockList } from 'node:net'
import type { Backend } from '../balancer/backend.js'
import type { DataPlane } from '../dataplane/dataplane.js'
import { ConfigError, NotFoundError } from '../errors.js'
import type { FrontendKind } from '../frontend/contract.js'
import type { ServicePortRuntime } from '../frontend/runtime.js'
import { isIP, isLocalAddress } from '../model/ip.js'
import { selfLoopOf } from '../model/self-loop.js'
import type { Service, ServicePort } from '../model/types.js'
import { compareBackends, computeEndpointSets, type Endpoint, endpointKey } from '../table/endpoints.js'
import type { Table } from '../table/table.js'

export interface ExplainOptions {
  /** The service port: its name or number. */
  port: string | number
  /** The client's address (affinity, hash, loadBalancerSourceRanges). Default 127.0.0.1. */
  clientIP?: string
  /** Which frontend the client connects to: its traffic policy and source ranges apply. Default 'clusterIP'. */
  kind?: Exclude<FrontendKind, 'healthCheck'>
}

export interface EndpointVerdict {
  /** `ip:port`. */
  endpoint: string
  nodeName: string
  podName: string
  /** Could take this client's next connection. */
  eligible: boolean
  /** The one the next connection would get. */
  next: boolean
  /** Why it is not eligible, one line each (several may hold); for an eligible one, notes ('terminating, used as fallback'). */
  reasons: string[]
}

export interface Explanation {
  /** `namespace/name`. */
  service: string
  /** The port's name, or its number when unnamed. */
  port: string
  protocol: 'TCP' | 'UDP'
  kind: Exclude<FrontendKind, 'healthCheck'>
  clientIP: string
  algorithm: string
  sessionAffinity: 'None' | 'ClientIP'
  /**
   * `ip:port` of the endpoint the next connection from `clientIP` would get; null when none would
   * (`reason` says why), or when the pick is a random draw that cannot be foreseen (no seed).
   */
  endpoint: string | null
  /** Why that endpoint, or why none. */
  reason: string
  /** Every endpoint the service's objects name for this port, in table order (ready first). */
  endpoints: EndpointVerdict[]
}

/** One address the objects name for the port, with what they say of it. */
interface Named {
  key: string
  nodeName: string
  podName: string
  /** Why the objects themselves keep it out ('' = ready); `terminating` = serving and terminating. */
  status: '' | 'terminating' | string
}

const KINDS: ReadonlyArray<ExplainOptions['kind']> = ['clusterIP', 'externalIP', 'loadBalancer', 'nodePort']

type Picked = { backend: Backend | undefined, pinned: boolean } | null

export function explain (table: Table, dp: DataPlane, hostname: string, service: string, opts: ExplainOptions): Explanation {
  if (typeof opts !== 'object' || opts === null) throw new ConfigError('explain(): expected options { port, clientIP?, kind? }')
  const [ns, name] = service.includes('/') ? service.split('/', 2) as [string, string] : ['default', service]
  const clientIP = opts.clientIP ?? '127.0.0.1'
  if (!isIP(clientIP)) throw new ConfigError(`explain(): clientIP: expected an IP address, got ${JSON.stringify(clientIP)}`)
  const kind = opts.kind ?? 'clusterIP'
  if (!KINDS.includes(kind)) throw new ConfigError(`explain(): kind: expected one of ${KINDS.join(', ')}, got ${JSON.stringify(kind)}`)
  const states = table.statesOf(`${ns}/${name}`)
  if (states.length === 0) throw new NotFoundError(`no service ${ns}/${name}`)
  const st = states.find((s) => s.port.name === opts.port || s.port.port === opts.port || String(s.port.port) === opts.port)
  if (st === undefined) throw new NotFoundError(`service ${ns}/${name} has no port ${String(opts.port)}`)
  const svc = st.service
  const sp = st.port
  const rt = dp.runtimes.get(st.id)
  const out: Explanation = {
    service: `${ns}/${name}`, port: sp.name === '' ? String(sp.port) : sp.name, protocol: sp.protocol, kind, clientIP,
    algorithm: rt?.balancer.algorithm ?? 'round-robin', sessionAffinity: svc.sessionAffinity, endpoint: null, reason: '', endpoints: [],
  }
  const named = namedEndpoints(table, svc, sp)
  const verdicts = named.map((n): EndpointVerdict => ({ endpoint: n.key, nodeName: n.nodeName, podName: n.podName, eligible: false, next: false, reasons: [] }))
  out.endpoints = verdicts
  const spec = dp.frontendSpecs(st).find((s) => s.kind === kind)
  if (rt === undefined || spec === undefined) {
    out.reason = rt === undefined ? `service port ${st.id} is not served yet (no sync has taken it)` : `service port ${st.id} has no ${kind} frontend (type ${svc.type})`
    for (const v of verdicts) v.reasons.push(out.reason)
    return out
  }
  const local = spec.local
  const policy = kind === 'clusterIP' ? 'internalTrafficPolicy' : 'externalTrafficPolicy'
  const candidates = local ? rt.localEndpoints : rt.balancer.endpoints
  const inSet = new Map(candidates.map((b) => [b.key, b]))
  const backends = backendsOf(rt)
  const refused = kind === 'loadBalancer' ? outsideRanges(svc.loadBalancerSourceRanges, clientIP) : ''
  for (let i = 0; i < named.length; i++) {
    const n = named[i] as Named
    const v = verdicts[i] as EndpointVerdict
    const b = backends.get(n.key)
    const self = selfLoopOf(svc, sp, ipOf(n.key), portOf(n.key), isLocalAddress)
    if (n.status !== '' && n.status !== 'terminating') v.reasons.push(n.status)
    if (n.status === 'terminating' && !inSet.has(n.key)) v.reasons.push(`terminating: serving-and-terminating endpoints take connections only when no endpoint is ready${local ? ' on this node' : ''}`)
    if (n.status === 'terminating' && inSet.has(n.key)) v.reasons.push(`terminating, used as the fallback: no endpoint is ready${local ? ' on this node' : ''}`)
    if (self !== '') v.reasons.push(`self-loop: it is this service's own ${self} address (never dialled)`)
    if (local && n.nodeName !== hostname) v.reasons.push(`on node ${JSON.stringify(n.nodeName)}, not this node (${JSON.stringify(hostname)}): ${policy} Local`)
    for (const h of healthReasons(b)) v.reasons.push(h)
    const down = downFaults(rt, n.key)
    if (down !== '') v.reasons.push(`${down}: its dials fail`)
    if (refused !== '') v.reasons.push(refused)
    v.eligible = inSet.has(n.key) && refused === '' && v.reasons.every((r) => r.startsWith('terminating, used'))
  }
  if (refused !== '') { out.reason = `refused: ${refused}`; return out }
  const picked = peek(rt, clientIP, local ? candidates : undefined)
  const eligible = verdicts.filter((v) => v.eligible)
  if (eligible.length === 0) {
    out.reason = candidates.length === 0 ? `no endpoint can take it: the connection is ${sp.protocol === 'TCP' ? 'reset' : 'dropped'} (no-endpoints)` : 'no endpoint can take it'
    return out
  }
  if (picked === null) {
    out.reason = `${out.algorithm}: a random draw among the ${eligible.length} eligible endpoint${eligible.length === 1 ? '' : 's'} (createProxy({ seed }) makes it foreseeable)`
    return out
  }
  const chosen = picked.backend
  if (chosen === undefined) { out.reason = 'no endpoint can take it'; return out }
  out.endpoint = chosen.key
  const v = verdicts.find((x) => x.endpoint === chosen.key)
  if (v !== undefined) v.next = true
  if (picked.pinned) {
    out.reason = `ClientIP affinity: ${clientIP} is pinned to ${chosen.key}`
    for (const o of eligible) if (o !== v) { o.eligible = false; o.reasons.push(`${clientIP} is pinned to ${chosen.key} by ClientIP affinity`) }
  } else {
    out.reason = pickReason(out.algorithm, chosen, candidates)
    if (svc.sessionAffinity === 'ClientIP') out.reason += `; ClientIP affinity: ${clientIP} has no pin yet, this pick becomes it`
  }
  const down = downFaults(rt, chosen.key)
  if (down !== '') out.reason += `; but it is ${down}: that dial fails and the connection moves on to the next pick`
  return out
}

/** Balancer.peek (a pure look at the next pick), when the balancer has it. */
function peek (rt: ServicePortRuntime, clientIP: string, candidates: Backend[] | undefined): Picked {
  const p = (rt.balancer as { peek?: (ip: string, c?: Backend[]) => Picked }).peek
  if (typeof p !== 'function') return null
  return p.call(rt.balancer, clientIP, candidates)
}

function pickReason (algorithm: string, b: Backend, eps: Backend[]): string {
  const i = eps.indexOf(b)
  switch (algorithm) {
    case 'round-robin': return `round-robin: next in turn (${i + 1} of ${eps.length})`
    case 'random': return `random: the seeded draw picks ${i + 1} of ${eps.length}`
    case 'least-connections': return `least-connections: fewest open (${b.active})`
    case 'p2c': return `p2c: of the two seeded draws, fewer open (${b.active})`
    case 'hash': return 'hash: the client address maps to it'
    default: return `${algorithm}: picked`
  }
}

/** Every Backend the runtime knows, by key (endpoint health keeps ejected ones in rt.byKey). */
function backendsOf (rt: ServicePortRuntime): Map<string, Backend> {
  const m = new Map<string, Backend>()
  const all = (rt as { byKey?: Map<string, Backend> }).byKey
  if (all instanceof Map) for (const [k, b] of all) m.set(k, b)
  for (const b of rt.balancer.endpoints) m.set(b.key, b)
  for (const b of rt.localEndpoints) m.set(b.key, b)
  return m
}

/** Outlier ejection and active checks (balancer/backend.ts fields, when present). */
function healthReasons (b: Backend | undefined): string[] {
  if (b === undefined) return []
  const h = b as { ejected?: boolean, ejectedUntil?: number, check?: string }
  const out: string[] = []
  if (h.ejected === true) out.push(`ejected by outlier detection${typeof h.ejectedUntil === 'number' && h.ejectedUntil > 0 ? ` until ${new Date(h.ejectedUntil).toISOString()}` : ''}`)
  if (h.check === 'down') out.push('health check failing')
  return out
}

/** A `down` fault on the endpoint (api/faults.ts, rt.faults), in words; '' when none. */
function downFaults (rt: ServicePortRuntime, key: string): string {
  const set = (rt as { faults?: { forEndpoint?: (k: string) => readonly unknown[] } | null }).faults
  if (set === null || set === undefined || typeof set.forEndpoint !== 'function') return ''
  for (const x of set.forEndpoint(key)) {
    // The set hands out toxics, or entries holding one (`toxic`, `removed`).
    const e = x as { removed?: boolean, toxic?: ToxicLike } & Partial<ToxicLike>
    const t: Partial<ToxicLike> = e.toxic ?? e
    if (e.removed === true || t.type !== 'down') continue
    const mode = t.attributes?.mode
    return `down (fault ${JSON.stringify(t.name)}${typeof mode === 'string' ? `, ${mode}` : ''}${(t.toxicity ?? 1) < 1 ? `, toxicity ${String(t.toxicity)}` : ''})`
  }
  return ''
}

interface ToxicLike { name: string, type: string, toxicity: number, attributes: Record<string, unknown> }

function outsideRanges (cidrs: string[], ip: string): string {
  if (cidrs.length === 0) return ''
  const list = new BlockList()
  for (const c of cidrs) {
    const slash = c.indexOf('/')
    const a = c.slice(0, slash)
    list.addSubnet(a, Number(c.slice(slash + 1)), a.includes(':') ? 'ipv6' : 'ipv4')
  }
  if (list.check(ip, ip.includes(':') ? 'ipv6' : 'ipv4')) return ''
  return `client ${ip} is outside loadBalancerSourceRanges (${cidrs.join(', ')})`
}

function ipOf (key: string): string {
  return key.startsWith('[') ? key.slice(1, key.indexOf(']')) : key.slice(0, key.lastIndexOf(':'))
}

function portOf (key: string): number {
  return Number(key.slice(key.lastIndexOf(':') + 1))
}

/**
 * Every address the service's objects name for this port, ready or not, with what keeps it out:
 * the sets the table computes (table/endpoints.ts), and what it leaves out with its reason.
 */
function namedEndpoints (table: Table, svc: Service, sp: ServicePort): Named[] {
  const left: Endpoint[] = []
  const why = new Map<string, string>()
  const { ready, servingTerminating } = computeEndpointSets(svc, sp, table.sourcesOf(svc), (ip, port, nodeName, podName, reason) => {
    const key = endpointKey(ip, port)
    if (why.has(key)) return
    why.set(key, reason)
    left.push({ key, ip, port, nodeName, podName, ready: false })
  })
  const named = (e: Endpoint, status: string): Named => ({ key: e.key, nodeName: e.nodeName, podName: e.podName, status })
  const taken = new Set([...ready, ...servingTerminating].map((e) => e.key))
  return [
    ...ready.map((e) => named(e, '')),
    ...servingTerminating.map((e) => named(e, 'terminating')),
    ...left.filter((e) => !taken.has(e.key)).sort(compareBackends).map((e) => named(e, why.get(e.key) ?? '')),
  ]
}
