import { isIP } from 'node:net'
import { ValidationError, type ValidationIssue } from '../errors.js'
import type { EndpointSlice, Endpoints, KubeObject, ObjectKind, Pod, Service, ServicePort } from '../model/types.js'
import { objectRef } from '../model/types.js'
import { type Cidr, cidrContains, fnv1a, intToIpv4, parseCidr } from '../model/ip.js'
import type { ObjectRef } from './refs.js'
import { computeEndpointSets, type Endpoint, selectorMatches } from './endpoints.js'

export const DEFAULT_CLUSTER_IP_RANGE = '127.96.0.0/16'
export const DEFAULT_NODE_PORT_RANGE = '30000-32767'

/** One port of one service with its current ready backends: the unit the data plane serves. */
export interface ServicePortState {
  /** `namespace/name:portName` (the port number when the port is unnamed). */
  id: string
  service: Service
  port: ServicePort
  endpoints: Endpoint[]
  /**
   * Serving-and-terminating endpoints that are not ready (KEP-1669), on every node. `endpoints`
   * already falls back to them when nothing is ready anywhere; traffic policy Local needs them
   * separately, to fall back per node. Absent means none.
   */
  servingTerminating?: Endpoint[]
}

export interface TableOptions {
  serviceClusterIPRange?: string
  serviceNodePortRange?: string
}

export interface PortRange { min: number, max: number }

export function parsePortRange (text: string, flag = '--service-node-port-range'): PortRange {
  const m = /^(\d+)-(\d+)$/.exec(text.trim())
  const min = Number(m?.[1])
  const max = Number(m?.[2])
  if (m === null || min < 1 || max > 65535 || min > max) {
    throw new SyntaxError(`${flag}: expected a port range such as 30000-32767, got "${text}"`)
  }
  return { min, max }
}

const svcKeyOf = (namespace: string, name: string): string => `${namespace}/${name}`

export function servicePortId (svc: Service, p: ServicePort): string {
  return `${svc.namespace}/${svc.name}:${p.name === '' ? String(p.port) : p.name}`
}

/**
 * The desired state: every object applied so far, indexed so that one change recomputes
 * only the services it can affect (O(changed), not O(all)).
 *
 * Writes are validated in full before anything is mutated, so a rejected batch leaves the
 * table exactly as it was. The API server's allocations (clusterIP, nodePort) happen here.
 */
export class Table {
  readonly clusterIPRange: Cidr
  readonly nodePortRange: PortRange
  revision = 0

  readonly services = new Map<string, Service>()
  readonly endpoints = new Map<string, Endpoints>()
  readonly slices = new Map<string, EndpointSlice>()
  private readonly slicesByService = new Map<string, Set<string>>()
  private readonly podsByNs = new Map<string, Map<string, Pod>>()
  private readonly servicesByNs = new Map<string, Set<string>>()
  private readonly clusterIPs = new Map<string, string>() // ip -> svcKey
  // Keyed by number alone: the API server's allocator is one bitmap for TCP and UDP, so
  // another service cannot take 30053/UDP when one holds 30053/TCP.
  private readonly nodePorts = new Map<number, string>() // nodePort -> svcKey
  private readonly states = new Map<string, ServicePortState[]>()

  constructor (opts: TableOptions = {}) {
    this.clusterIPRange = parseCidr(opts.serviceClusterIPRange ?? DEFAULT_CLUSTER_IP_RANGE, '--service-cluster-ip-range')
    this.nodePortRange = parsePortRange(opts.serviceNodePortRange ?? DEFAULT_NODE_PORT_RANGE)
  }

  get pods (): Pod[] {
    const out: Pod[] = []
    for (const m of this.podsByNs.values()) for (const p of m.values()) out.push(p)
    return out
  }

  /** Every current service port state, sorted by id. */
  allStates (): ServicePortState[] {
    const out: ServicePortState[] = []
    for (const s of this.states.values()) out.push(...s)
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  }

  statesOf (svcKey: string): ServicePortState[] {
    return this.states.get(svcKey) ?? []
  }

  has (ref: ObjectRef): boolean {
    return this.get(ref) !== undefined
  }

  get (ref: ObjectRef): KubeObject | undefined {
    const k = svcKeyOf(ref.namespace, ref.name)
    switch (ref.kind) {
      case 'Service': return this.services.get(k)
      case 'Endpoints': return this.endpoints.get(k)
      case 'EndpointSlice': return this.slices.get(k)
      case 'Pod': return this.podsByNs.get(ref.namespace)?.get(ref.name)
    }
  }

  /** Every stored object (for snapshots and full listings). */
  allObjects (): KubeObject[] {
    return [...this.services.values(), ...this.endpoints.values(), ...this.slices.values(), ...this.pods]
  }

  /**
   * Creates or replaces `upserts` and removes `deletes`, atomically.
   * Returns the keys (`namespace/name`) of the services whose ports must be re-served.
   * Throws ValidationError and changes nothing when the batch conflicts.
   */
  write (upserts: KubeObject[], deletes: ObjectRef[], file: string): Set<string> {
    const prepared = this.prepare(upserts, deletes, file)
    const affected = new Set<string>()
    for (const ref of deletes) this.removeOne(ref, affected)
    for (const o of prepared) this.putOne(o, affected)
    for (const key of affected) this.recompute(key)
    this.revision++
    return affected
  }

  /** Makes the table hold exactly `objects` (a config file is the whole truth). */
  replaceAll (objects: KubeObject[], file: string): Set<string> {
    const keep = new Set(objects.map((o) => `${o.kind}/${o.namespace}/${o.name}`))
    const deletes: ObjectRef[] = []
    for (const o of this.allObjects()) {
      if (!keep.has(`${o.kind}/${o.namespace}/${o.name}`)) deletes.push({ kind: o.kind, namespace: o.namespace, name: o.name })
    }
    // Unchanged objects are skipped so a re-read of the same file touches nothing.
    const changed = objects.filter((o) => !sameObject(this.get(o), o))
    return this.write(changed, deletes, file)
  }

  private prepare (upserts: KubeObject[], deletes: ObjectRef[], file: string): KubeObject[] {
    const issues: ValidationIssue[] = []
    const deleted = new Set(deletes.filter((d) => d.kind === 'Service').map((d) => svcKeyOf(d.namespace, d.name)))
    const batchKeys = new Set<string>()
    const ipTaken = new Map<string, string>()
    const portTaken = new Map<number, string>()
    // What stays of the current allocations once this batch replaces or deletes services.
    const replaced = new Set<string>(deleted)
    for (const o of upserts) if (o.kind === 'Service') replaced.add(svcKeyOf(o.namespace, o.name))
    const ipOwner = (ip: string): string | undefined => {
      const cur = this.clusterIPs.get(ip)
      return cur !== undefined && !replaced.has(cur) ? cur : ipTaken.get(ip)
    }
    const portOwner = (k: number): string | undefined => {
      const cur = this.nodePorts.get(k)
      return cur !== undefined && !replaced.has(cur) ? cur : portTaken.get(k)
    }

    const out: KubeObject[] = []
    const pendingIP: Service[] = []
    const pendingPorts: Array<{ svc: Service, idx: number }> = []
    for (const o of upserts) {
      const dup = `${o.kind}/${o.namespace}/${o.name}`
      if (batchKeys.has(dup)) {
        issues.push({ file, object: objectRef(o), path: '', message: 'appears more than once in this batch' })
        continue
      }
      batchKeys.add(dup)
      if (o.kind !== 'Service') { out.push(o); continue }
      const key = svcKeyOf(o.namespace, o.name)
      const svc: Service = { ...o, ports: o.ports.map((p) => ({ ...p })) }
      const prev = this.services.get(key)
      if (svc.type !== 'ExternalName' && svc.clusterIP === '' && prev !== undefined && prev.clusterIP !== 'None' && prev.clusterIP !== '') {
        svc.clusterIP = prev.clusterIP // clusterIP is immutable once allocated
      }
      if (svc.type !== 'ExternalName' && svc.clusterIP !== '' && svc.clusterIP !== 'None') {
        const owner = ipOwner(svc.clusterIP)
        if (owner !== undefined && owner !== key) {
          issues.push({ file, object: objectRef(svc), path: 'spec.clusterIP', message: `expected an unused address; ${svc.clusterIP} is already allocated to Service ${owner}` })
        } else ipTaken.set(svc.clusterIP, key)
      } else if (svc.type !== 'ExternalName' && svc.clusterIP === '') pendingIP.push(svc)

      const wantsNodePort = svc.type === 'NodePort' || (svc.type === 'LoadBalancer' && svc.allocateLoadBalancerNodePorts)
      // One service may use a number once per protocol (53/TCP and 53/UDP may share it).
      const ownPorts = new Set<string>()
      svc.ports.forEach((p, idx) => {
        if (p.nodePort === 0 && wantsNodePort) {
          const old = prev?.ports.find((q) => q.name === p.name && q.protocol === p.protocol)
          if (old !== undefined && old.nodePort !== 0) p.nodePort = old.nodePort
        }
        if (p.nodePort !== 0) {
          if (svc.type === 'ClusterIP' || svc.type === 'ExternalName') {
            issues.push({ file, object: objectRef(svc), path: `spec.ports[${idx}].nodePort`, message: `expected no nodePort for a Service of type ${svc.type}` })
            return
          }
          if (p.nodePort < this.nodePortRange.min || p.nodePort > this.nodePortRange.max) {
            issues.push({ file, object: objectRef(svc), path: `spec.ports[${idx}].nodePort`, message: `expected a port in the node port range ${this.nodePortRange.min}-${this.nodePortRange.max}, got ${p.nodePort}` })
            return
          }
          const own = `${p.protocol}/${p.nodePort}`
          const owner = portOwner(p.nodePort)
          if (owner !== undefined && owner !== key) {
            issues.push({ file, object: objectRef(svc), path: `spec.ports[${idx}].nodePort`, message: `expected an unused node port; ${p.nodePort} is already allocated to Service ${owner}` })
          } else if (ownPorts.has(own)) {
            issues.push({ file, object: objectRef(svc), path: `spec.ports[${idx}].nodePort`, message: `expected each node port once per protocol, got ${own} a second time` })
          } else {
            ownPorts.add(own)
            portTaken.set(p.nodePort, key)
          }
        } else if (wantsNodePort) pendingPorts.push({ svc, idx })
      })
      // healthCheckNodePort comes from the same range and may be nobody else's node port.
      const hc = svc.healthCheckNodePort
      if (hc !== 0) {
        const owner = portOwner(hc)
        if (hc < this.nodePortRange.min || hc > this.nodePortRange.max) {
          issues.push({ file, object: objectRef(svc), path: 'spec.healthCheckNodePort', message: `expected a port in the node port range ${this.nodePortRange.min}-${this.nodePortRange.max}, got ${hc}` })
        } else if ((owner !== undefined && owner !== key) || ownPorts.has(`TCP/${hc}`)) {
          issues.push({ file, object: objectRef(svc), path: 'spec.healthCheckNodePort', message: `expected an unused node port; ${hc} is already allocated to Service ${owner ?? key}` })
        } else portTaken.set(hc, key)
      }
      out.push(svc)
    }

    // Allocations after explicit claims, in a stable order, so results do not depend on file order.
    pendingIP.sort((a, b) => cmp(svcKeyOf(a.namespace, a.name), svcKeyOf(b.namespace, b.name)))
    for (const svc of pendingIP) {
      const key = svcKeyOf(svc.namespace, svc.name)
      const ip = this.allocateIP(key, (ip) => ipOwner(ip) !== undefined)
      if (ip === undefined) {
        issues.push({ file, object: objectRef(svc), path: 'spec.clusterIP', message: `no free address left in --service-cluster-ip-range ${intToIpv4(this.clusterIPRange.base)}/${this.clusterIPRange.bits}` })
      } else {
        svc.clusterIP = ip
        ipTaken.set(ip, key)
      }
    }
    pendingPorts.sort((a, b) => cmp(svcKeyOf(a.svc.namespace, a.svc.name), svcKeyOf(b.svc.namespace, b.svc.name)) || a.idx - b.idx)
    for (const { svc, idx } of pendingPorts) {
      const key = svcKeyOf(svc.namespace, svc.name)
      const p = svc.ports[idx] as ServicePort
      const port = this.allocatePort(`${key}:${p.name}/${p.protocol}`, (n) => portOwner(n) !== undefined)
      if (port === undefined) {
        issues.push({ file, object: objectRef(svc), path: `spec.ports[${idx}].nodePort`, message: `no free port left in --service-node-port-range ${this.nodePortRange.min}-${this.nodePortRange.max}` })
      } else {
        p.nodePort = port
        portTaken.set(port, key)
      }
    }
    if (issues.length > 0) throw new ValidationError(issues)
    return out
  }

  /** Hash the service key into the range, probe linearly: stable across restarts and nodes. */
  private allocateIP (key: string, taken: (ip: string) => boolean): string | undefined {
    const { base, size } = this.clusterIPRange
    // Skip the network address and (for ranges > /31) the broadcast address.
    const first = size > 2 ? 1 : 0
    const usable = size > 2 ? size - 2 : size
    const start = fnv1a(key) % usable
    for (let i = 0; i < usable; i++) {
      const ip = intToIpv4((base + first + ((start + i) % usable)) >>> 0)
      if (!taken(ip)) return ip
    }
    return undefined
  }

  private allocatePort (key: string, taken: (n: number) => boolean): number | undefined {
    const { min, max } = this.nodePortRange
    const size = max - min + 1
    const start = fnv1a(key) % size
    for (let i = 0; i < size; i++) {
      const n = min + ((start + i) % size)
      if (!taken(n)) return n
    }
    return undefined
  }

  private removeOne (ref: ObjectRef, affected: Set<string>): void {
    const k = svcKeyOf(ref.namespace, ref.name)
    switch (ref.kind) {
      case 'Service': {
        const s = this.services.get(k)
        if (s === undefined) return
        this.unindexService(s)
        this.services.delete(k)
        affected.add(k)
        return
      }
      case 'Endpoints':
        if (this.endpoints.delete(k)) affected.add(k)
        return
      case 'EndpointSlice': {
        const s = this.slices.get(k)
        if (s === undefined) return
        this.slices.delete(k)
        const sk = svcKeyOf(s.namespace, s.serviceName)
        this.slicesByService.get(sk)?.delete(k)
        affected.add(sk)
        return
      }
      case 'Pod': {
        const m = this.podsByNs.get(ref.namespace)
        const p = m?.get(ref.name)
        if (m === undefined || p === undefined) return
        m.delete(ref.name)
        this.podAffects(p, affected)
      }
    }
  }

  private putOne (o: KubeObject, affected: Set<string>): void {
    const k = svcKeyOf(o.namespace, o.name)
    switch (o.kind) {
      case 'Service': {
        const prev = this.services.get(k)
        if (prev !== undefined) this.unindexService(prev)
        this.services.set(k, o)
        this.indexService(o)
        affected.add(k)
        return
      }
      case 'Endpoints':
        this.endpoints.set(k, o)
        affected.add(k)
        return
      case 'EndpointSlice': {
        const prev = this.slices.get(k)
        if (prev !== undefined) {
          const pk = svcKeyOf(prev.namespace, prev.serviceName)
          this.slicesByService.get(pk)?.delete(k)
          affected.add(pk)
        }
        this.slices.set(k, o)
        const sk = svcKeyOf(o.namespace, o.serviceName)
        let set = this.slicesByService.get(sk)
        if (set === undefined) this.slicesByService.set(sk, (set = new Set()))
        set.add(k)
        affected.add(sk)
        return
      }
      case 'Pod': {
        let m = this.podsByNs.get(o.namespace)
        if (m === undefined) this.podsByNs.set(o.namespace, (m = new Map()))
        const prev = m.get(o.name)
        if (prev !== undefined) this.podAffects(prev, affected)
        m.set(o.name, o)
        this.podAffects(o, affected)
      }
    }
  }

  private podAffects (pod: Pod, affected: Set<string>): void {
    const keys = this.servicesByNs.get(pod.namespace)
    if (keys === undefined) return
    for (const k of keys) {
      const s = this.services.get(k)
      if (s?.selector != null && selectorMatches(s.selector, pod.labels)) affected.add(k)
    }
  }

  private indexService (s: Service): void {
    const k = svcKeyOf(s.namespace, s.name)
    let set = this.servicesByNs.get(s.namespace)
    if (set === undefined) this.servicesByNs.set(s.namespace, (set = new Set()))
    set.add(k)
    if (isIP(s.clusterIP) !== 0) this.clusterIPs.set(s.clusterIP, k)
    for (const p of s.ports) if (p.nodePort !== 0) this.nodePorts.set(p.nodePort, k)
    if (s.healthCheckNodePort !== 0) this.nodePorts.set(s.healthCheckNodePort, k)
  }

  private unindexService (s: Service): void {
    const k = svcKeyOf(s.namespace, s.name)
    this.servicesByNs.get(s.namespace)?.delete(k)
    if (this.clusterIPs.get(s.clusterIP) === k) this.clusterIPs.delete(s.clusterIP)
    for (const p of s.ports) {
      if (this.nodePorts.get(p.nodePort) === k) this.nodePorts.delete(p.nodePort)
    }
    if (this.nodePorts.get(s.healthCheckNodePort) === k) this.nodePorts.delete(s.healthCheckNodePort)
  }

  private recompute (key: string): void {
    const svc = this.services.get(key)
    if (svc === undefined) {
      this.states.delete(key)
      return
    }
    const sliceKeys = this.slicesByService.get(key)
    const slices: EndpointSlice[] = []
    if (sliceKeys !== undefined) for (const sk of sliceKeys) { const s = this.slices.get(sk); if (s !== undefined) slices.push(s) }
    const podMap = svc.selector !== null ? this.podsByNs.get(svc.namespace) : undefined
    const src = { endpoints: this.endpoints.get(key), slices, pods: podMap === undefined ? [] : [...podMap.values()] }
    const states: ServicePortState[] = []
    for (const p of svc.ports) {
      const { ready, servingTerminating } = computeEndpointSets(svc, p, src)
      states.push({ id: servicePortId(svc, p), service: svc, port: p, endpoints: ready.length > 0 ? ready : servingTerminating, servingTerminating })
    }
    this.states.set(key, states)
  }

  /** True when the given IP belongs to the allocation range. */
  inClusterRange (ip: string): boolean {
    return cidrContains(this.clusterIPRange, ip)
  }
}

function cmp (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function sameObject (a: KubeObject | undefined, b: KubeObject): boolean {
  if (a === undefined) return false
  if (a.kind === 'Service' && b.kind === 'Service') {
    // A stored service carries allocations the file may leave out; compare with them filled in.
    const filled: Service = {
      ...b,
      clusterIP: b.clusterIP === '' ? a.clusterIP : b.clusterIP,
      ports: b.ports.map((p) => {
        if (p.nodePort !== 0) return p
        const o = a.ports.find((q) => q.name === p.name && q.protocol === p.protocol)
        return { ...p, nodePort: o?.nodePort ?? 0 }
      }),
    }
    return JSON.stringify(a) === JSON.stringify(filled)
  }
  return JSON.stringify(a) === JSON.stringify(b)
}
