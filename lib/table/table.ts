import { DEFAULTS } from '../defaults.js'
import { ValidationError, type ValidationIssue } from '../errors.js'
import type { EndpointSlice, Endpoints, KubeObject, Pod, Service, ServicePort } from '../model/types.js'
import { objectRef } from '../model/types.js'
import type { Cidr } from '../model/ip.js'
import type { ObjectRef } from './refs.js'
import { AllocationBatch, Allocator, type PortRange } from './allocator.js'
import { computeEndpointSets, type Endpoint, selectorMatches } from './endpoints.js'


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

const svcKeyOf = (namespace: string, name: string): string => `${namespace}/${name}`

export function servicePortId (svc: Service, p: ServicePort): string {
  return `${svc.namespace}/${svc.name}:${p.name === '' ? String(p.port) : p.name}`
}

/**
 * The desired state: every object applied so far, indexed so that one change recomputes
 * only the services it can affect (O(changed), not O(all)).
 *
 * Writes are validated in full before anything is mutated, so a rejected batch leaves the
 * table exactly as it was. The API server's allocations (clusterIP, nodePort) are checked and
 * made in the same step, by the allocator (allocator.ts).
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
  private readonly allocator: Allocator
  private readonly states = new Map<string, ServicePortState[]>()

  constructor (opts: TableOptions = {}) {
    this.allocator = new Allocator(opts.serviceClusterIPRange ?? DEFAULTS.serviceClusterIPRange, opts.serviceNodePortRange ?? DEFAULTS.serviceNodePortRange)
    this.clusterIPRange = this.allocator.clusterIPRange
    this.nodePortRange = this.allocator.nodePortRange
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
    const batchKeys = new Set<string>()
    // The current allocations of services this batch replaces or deletes are theirs to keep or free.
    const replaced = new Set<string>(deletes.filter((d) => d.kind === 'Service').map((d) => svcKeyOf(d.namespace, d.name)))
    for (const o of upserts) if (o.kind === 'Service') replaced.add(svcKeyOf(o.namespace, o.name))
    const allocations = new AllocationBatch(this.allocator, replaced, file, issues)

    const out: KubeObject[] = []
    for (const o of upserts) {
      const dup = `${o.kind}/${o.namespace}/${o.name}`
      if (batchKeys.has(dup)) {
        issues.push({ file, object: objectRef(o), path: '', message: 'appears more than once in this batch' })
        continue
      }
      batchKeys.add(dup)
      if (o.kind !== 'Service') { out.push(o); continue }
      const key = svcKeyOf(o.namespace, o.name)
      // A copy: allocation fills in clusterIP and nodePorts, and the caller's object stays as given.
      const svc: Service = { ...o, ports: o.ports.map((p) => ({ ...p })) }
      allocations.claim(svc, key, this.services.get(key))
      out.push(svc)
    }
    allocations.allocatePending()
    if (issues.length > 0) throw new ValidationError(issues)
    return out
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
    this.allocator.reserve(k, s)
  }

  private unindexService (s: Service): void {
    const k = svcKeyOf(s.namespace, s.name)
    this.servicesByNs.get(s.namespace)?.delete(k)
    this.allocator.release(k, s)
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
    return this.allocator.inClusterRange(ip)
  }
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
