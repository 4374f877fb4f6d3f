import { DEFAULTS } from '../defaults.js'
import { ValidationError, type ValidationIssue } from '../errors.js'
import type { EndpointSlice, Endpoints, KubeObject, Pod, Service, ServicePort } from '../model/types.js'
import { objectKey, objectRef } from '../model/types.js'
import type { Cidr } from '../model/ip.js'
import { runInSlices, runNow, type Steps } from '../util/slices.js'
import type { ObjectRef } from './refs.js'
import { AllocationBatch, Allocator, type PortRange } from './allocator.js'
import { computeEndpointSets, type Endpoint, type EndpointSources, selectorMatches } from './endpoints.js'
import { sameObject } from './same.js'

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
  /** The allocator to use (the Redis writer's reads the store's alloc index); the ranges above are then its own. */
  allocator?: Allocator
}

/** Objects per pause point of a write (runInSlices checks the clock at each). */
const STEP = 16

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
 *
 * A write runs at once (`write`, `replaceAll`) or in slices that give the event loop back in
 * between (`writeInSlices`, `replaceAllInSlices`: a reload of 10,000s of objects). Either way
 * what the rest of the proxy reads (`statesOf`, `allStates`, `revision`) changes in one step at
 * the end: between slices it is the state before the write (docs/architecture.md, "The life of
 * a write"). The object maps are the write's working state until then.
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
  /**
   * Services with a selector, per namespace, by one `key\0value` pair of their selector (the
   * first): a pod can only match services filed under one of its own labels, so a pod change
   * looks at those few, not at every service of its namespace.
   */
  private readonly bySelector = new Map<string, Map<string, Set<string>>>()
  private readonly allocator: Allocator
  private readonly states = new Map<string, ServicePortState[]>()

  constructor (opts: TableOptions = {}) {
    this.allocator = opts.allocator ?? new Allocator(opts.serviceClusterIPRange ?? DEFAULTS.serviceClusterIPRange, opts.serviceNodePortRange ?? DEFAULTS.serviceNodePortRange)
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
    return runNow(this.writing(upserts, deletes, file))
  }

  /** `write`, in slices: resolves (or rejects, changing nothing) once the whole write is done. */
  writeInSlices (upserts: KubeObject[], deletes: ObjectRef[], file: string): Promise<Set<string>> {
    return runInSlices(this.writing(upserts, deletes, file))
  }

  /** Makes the table hold exactly `objects` (a config file is the whole truth). */
  replaceAll (objects: KubeObject[], file: string): Set<string> {
    return runNow(this.replacing(objects, file))
  }

  /** `replaceAll`, in slices. */
  replaceAllInSlices (objects: KubeObject[], file: string): Promise<Set<string>> {
    return runInSlices(this.replacing(objects, file))
  }

  private * replacing (objects: KubeObject[], file: string): Steps<Set<string>> {
    const keep = new Set<string>()
    for (const o of objects) { keep.add(objectKey(o)); yield }
    const deletes: ObjectRef[] = []
    for (const o of this.allObjects()) {
      if (!keep.has(objectKey(o))) deletes.push({ kind: o.kind, namespace: o.namespace, name: o.name })
      yield
    }
    // Unchanged objects are skipped so a re-read of the same file touches nothing.
    const changed: KubeObject[] = []
    for (const o of objects) {
      if (!sameObject(this.get(o), o)) changed.push(o)
      yield
    }
    return yield * this.writing(changed, deletes, file)
  }

  private * writing (upserts: KubeObject[], deletes: ObjectRef[], file: string): Steps<Set<string>> {
    const prepared = yield * this.preparing(upserts, deletes, file)
    // Validated in full: from here on nothing can fail, and nothing else writes until the end
    // (the proxy serializes writes). The objects and indexes change step by step; the states
    // are computed aside and published, with the revision, in one step at the end.
    const affected = new Set<string>()
    // Indexed loops (a for-of allocates a result per step until optimized), and a pause point every
    // STEP objects, not every object: a step of 16 is still ~0.1 ms against the slice's 4.
    for (let i = 0; i < deletes.length; i++) { this.removeOne(deletes[i] as ObjectRef, affected); if (i % STEP === 0) yield }
    for (let i = 0; i < prepared.length; i++) { this.putOne(prepared[i] as KubeObject, affected); if (i % STEP === 0) yield }
    // Two arrays, not a Map: the keys are affected's, each once.
    const keys: string[] = []
    const next: Array<ServicePortState[] | null> = []
    for (const key of affected) { keys.push(key); next.push(this.compute(key)); if (keys.length % STEP === 0) yield }
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string
      const states = next[i] ?? null
      if (states === null) this.states.delete(key)
      else this.states.set(key, states)
    }
    this.revision++
    return affected
  }

  private * preparing (upserts: KubeObject[], deletes: ObjectRef[], file: string): Steps<KubeObject[]> {
    const issues: ValidationIssue[] = []
    // Keys seen in this batch, per kind: `namespace/name` serves as the service's key below too.
    const batchKeys = new Map<string, Set<string>>()
    // The current allocations of services this batch replaces or deletes are theirs to keep or free.
    const replaced = new Set<string>(deletes.filter((d) => d.kind === 'Service').map((d) => svcKeyOf(d.namespace, d.name)))
    for (let i = 0; i < upserts.length; i++) { const o = upserts[i] as KubeObject; if (o.kind === 'Service') replaced.add(svcKeyOf(o.namespace, o.name)) }
    const allocations = new AllocationBatch(this.allocator, replaced, file, issues)

    const out: KubeObject[] = []
    for (let i = 0; i < upserts.length; i++) {
      const o = upserts[i] as KubeObject
      const key = svcKeyOf(o.namespace, o.name)
      let ofKind = batchKeys.get(o.kind)
      if (ofKind === undefined) batchKeys.set(o.kind, (ofKind = new Set()))
      if (ofKind.has(key)) {
        issues.push({ file, object: objectRef(o), path: '', message: 'appears more than once in this batch' })
        continue
      }
      ofKind.add(key)
      if (o.kind !== 'Service') { out.push(o); continue }
      // A copy: allocation fills in clusterIP and nodePorts, and the caller's object stays as given.
      const svc: Service = { ...o, ports: o.ports.map((p) => ({ ...p })) }
      allocations.claim(svc, key, this.services.get(key))
      out.push(svc)
      if (i % STEP === 0) yield
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
    const index = this.bySelector.get(pod.namespace)
    if (index === undefined) return
    for (const [k, v] of Object.entries(pod.labels)) {
      const keys = index.get(selectorPair(k, v))
      if (keys === undefined) continue
      for (const key of keys) {
        const s = this.services.get(key)
        if (s?.selector != null && selectorMatches(s.selector, pod.labels)) affected.add(key)
      }
    }
  }

  private indexService (s: Service): void {
    const k = svcKeyOf(s.namespace, s.name)
    const pair = firstPair(s)
    if (pair !== null) {
      let index = this.bySelector.get(s.namespace)
      if (index === undefined) this.bySelector.set(s.namespace, (index = new Map()))
      let set = index.get(pair)
      if (set === undefined) index.set(pair, (set = new Set()))
      set.add(k)
    }
    this.allocator.reserve(k, s)
  }

  private unindexService (s: Service): void {
    const k = svcKeyOf(s.namespace, s.name)
    const pair = firstPair(s)
    const index = pair === null ? undefined : this.bySelector.get(s.namespace)
    const set = pair === null ? undefined : index?.get(pair)
    if (set !== undefined && index !== undefined && pair !== null) {
      set.delete(k)
      if (set.size === 0) index.delete(pair)
      if (index.size === 0) this.bySelector.delete(s.namespace)
    }
    this.allocator.release(k, s)
  }

  /** A service's port states from the objects stored now; null once the service is gone. */
  private compute (key: string): ServicePortState[] | null {
    const svc = this.services.get(key)
    if (svc === undefined) return null
    const src = this.sourcesOf(svc)
    const states: ServicePortState[] = []
    for (let i = 0; i < svc.ports.length; i++) {
      const p = svc.ports[i] as ServicePort
      const { ready, servingTerminating } = computeEndpointSets(svc, p, src)
      states.push({ id: servicePortId(svc, p), service: svc, port: p, endpoints: ready.length > 0 ? ready : servingTerminating, servingTerminating })
    }
    return states
  }

  /** The objects a service's endpoints come from (explain() walks them with computeEndpointSets too). */
  sourcesOf (svc: Service): EndpointSources {
    const key = `${svc.namespace}/${svc.name}`
    const sliceKeys = this.slicesByService.get(key)
    const slices: EndpointSlice[] = []
    if (sliceKeys !== undefined) for (const sk of sliceKeys) { const s = this.slices.get(sk); if (s !== undefined) slices.push(s) }
    const podMap = svc.selector !== null ? this.podsByNs.get(svc.namespace) : undefined
    // Pods are read only when neither slices nor Endpoints exist: iterated then, never copied.
    const pods: Iterable<Pod> = podMap === undefined ? [] : { [Symbol.iterator]: () => podMap.values() }
    return { endpoints: this.endpoints.get(key), slices, pods }
  }

  /** True when the given IP belongs to the allocation range. */
  inClusterRange (ip: string): boolean {
    return this.allocator.inClusterRange(ip)
  }
}

function selectorPair (k: string, v: string): string {
  return `${k}\0${v}`
}

/** The pair a selector service is filed under; null without a selector (pods never affect it). */
function firstPair (s: Service): string | null {
  if (s.selector === null) return null
  for (const k in s.selector) return selectorPair(k, s.selector[k] ?? '')
  return null
}
