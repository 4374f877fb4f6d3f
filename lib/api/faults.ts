import { FaultError } from '../errors.js'
import { type ActiveToxic, activeToxic, FaultCounts, FaultSet, scoped } from '../faults/fault-set.js'
import type { FaultScope, ScopedToxic, Toxic, ToxicInput } from '../faults/toxic.js'
import { TCP_TOXICS, UDP_TOXICS, validatePatch, validateScope, validateToxic } from '../faults/validate.js'
import type { ServicePortRuntime } from '../frontend/runtime.js'

/**
 * `proxy.faults`: the toxics a test harness attaches to services, service ports and endpoints,
 * added, changed and removed while traffic flows. Toxics may name a service that does not exist
 * yet: they take effect when it appears, and survive its runtimes being re-created (the data
 * plane asks forPort() whenever it builds or updates a runtime). Each change rebuilds the
 * FaultSet of the affected ports at once; a port with no toxic has `rt.faults === null`.
 */
export class FaultRegistry {
  /** By `namespace/name`, in the order added. */
  private readonly bySvc = new Map<string, ActiveToxic[]>()
  private readonly runtimes: () => Iterable<ServicePortRuntime>
  /** Bumped by every change: FaultSet.version. */
  private version = 0

  constructor (runtimes: () => Iterable<ServicePortRuntime>) {
    this.runtimes = runtimes
  }

  /**
   * Adds a toxic (two with stream 'both'); returns them as added. Throws FaultError naming the
   * field when the input is invalid, or when a toxic of that name already exists in that scope.
   */
  add (scope: FaultScope, input: ToxicInput): Toxic[] {
    const s = validateScope(scope)
    const toxics = validateToxic(input)
    const list = this.bySvc.get(s.service) ?? []
    for (const t of toxics) {
      if (list.some((e) => e.toxic.name === t.name && sameScope(e.scope, s))) throw new FaultError(`toxic.name: ${t.name} already exists on ${describe(s)}; update or remove it`)
    }
    for (const t of toxics) list.push(activeToxic(s, t))
    this.bySvc.set(s.service, list)
    this.refresh(s.service)
    return toxics.map((t) => ({ ...t, attributes: { ...t.attributes } }))
  }

  /**
   * Changes a toxic's toxicity and attributes (merged with the ones it has). Open connections
   * see new attributes from their next chunk on (latency, bandwidth, slicer, limit_data) or
   * when their timer fires (timeout, reset_peer); the toxicity applies to new connections.
   * `name` may be the base name given to a stream 'both' toxic: both halves change.
   */
  update (scope: FaultScope, name: string, patch: Partial<ToxicInput>): Toxic {
    const s = validateScope(scope)
    const found = this.find(s, name)
    if (found.length === 0) throw new FaultError(`toxic.name: no toxic ${String(name)} on ${describe(s)}`)
    const next = found.map((e) => validatePatch(e.toxic, patch)) // all validated before any changes
    found.forEach((e, i) => {
      const n = next[i] as ReturnType<typeof validatePatch>
      e.toxic.toxicity = n.toxicity
      e.toxic.attributes = n.attributes
    })
    this.refresh(s.service)
    const t = (found[0] as ActiveToxic).toxic
    return { ...t, attributes: { ...t.attributes } }
  }

  /** Removes a toxic (both halves of a stream 'both' one by its base name); false when there was none. */
  remove (scope: FaultScope, name: string): boolean {
    const s = validateScope(scope)
    const found = this.find(s, name)
    if (found.length === 0) return false
    this.drop(s.service, (e) => found.includes(e))
    return true
  }

  /**
   * The toxics at or under `scope` (a service: all of its toxics; a port: its own and its
   * endpoints'), each with its scope; every toxic when no scope is given. Copies.
   */
  list (scope?: Partial<FaultScope>): ScopedToxic[] {
    const s = scope === undefined ? undefined : validateScope(scope, true)
    const out: ScopedToxic[] = []
    for (const [svc, list] of this.bySvc) {
      if (s !== undefined && s.service !== '' && svc !== s.service) continue
      for (const e of list) if (s === undefined || under(e.scope, s)) out.push(scoped(e))
    }
    return out
  }

  /** Removes the toxics at or under `scope`, or every toxic (Toxiproxy's /reset). */
  clear (scope?: Partial<FaultScope>): void {
    const s = scope === undefined ? undefined : validateScope(scope, true)
    for (const svc of [...this.bySvc.keys()]) {
      if (s !== undefined && s.service !== '' && svc !== s.service) continue
      this.drop(svc, (e) => s === undefined || under(e.scope, s))
    }
  }

  /** The toxics applying to this runtime's port and protocol, or null when none does. */
  forPort (rt: ServicePortRuntime): FaultSet | null {
    const list = this.bySvc.get(`${rt.namespace}/${rt.service}`)
    if (list === undefined) return null
    const kinds = rt.state.port.protocol === 'UDP' ? UDP_TOXICS : TCP_TOXICS
    const mine = list.filter((e) => kinds.has(e.toxic.type) && portMatches(e.scope, rt))
    if (mine.length === 0) return null
    return new FaultSet(mine, (rt.faultCounts ??= new FaultCounts()), this.version)
  }

  /** The toxics on one service port as status() shows them (whatever the protocol, so nothing set is hidden). */
  forStatus (service: string, portName: string, port: number): ScopedToxic[] {
    const list = this.bySvc.get(service)
    if (list === undefined) return []
    return list.filter((e) => e.scope.port === undefined || e.scope.port === portName || e.scope.port === String(port)).map(scoped)
  }

  private find (s: FaultScope, name: string): ActiveToxic[] {
    const list = this.bySvc.get(s.service) ?? []
    const exact = list.filter((e) => sameScope(e.scope, s) && e.toxic.name === name)
    if (exact.length > 0) return exact
    return list.filter((e) => sameScope(e.scope, s) && (e.toxic.name === `${name}-upstream` || e.toxic.name === `${name}-downstream`))
  }

  private drop (svc: string, gone: (e: ActiveToxic) => boolean): void {
    const list = this.bySvc.get(svc)
    if (list === undefined) return
    const keep: ActiveToxic[] = []
    for (const e of list) {
      if (gone(e)) e.removed = true
      else keep.push(e)
    }
    if (keep.length === 0) this.bySvc.delete(svc)
    else this.bySvc.set(svc, keep)
    this.refresh(svc)
  }

  /** Rebuilds the sets of the service's runtimes. */
  private refresh (svc: string): void {
    this.version++
    for (const rt of this.runtimes()) {
      if (`${rt.namespace}/${rt.service}` === svc) rt.faults = this.forPort(rt)
    }
  }
}

function portMatches (s: FaultScope, rt: ServicePortRuntime): boolean {
  return s.port === undefined || s.port === rt.portName || s.port === String(rt.state.port.port)
}

function sameScope (a: FaultScope, b: FaultScope): boolean {
  return a.service === b.service && a.port === b.port && a.endpoint === b.endpoint
}

/** True if `a` is `b` or inside it (a port inside its service, an endpoint inside its port). */
function under (a: FaultScope, b: FaultScope): boolean {
  if (b.service !== '' && a.service !== b.service) return false
  if (b.port !== undefined && a.port !== b.port) return false
  return b.endpoint === undefined || a.endpoint === b.endpoint
}

function describe (s: FaultScope): string {
  return `${s.service}${s.port === undefined ? '' : `:${s.port}`}${s.endpoint === undefined ? '' : ` endpoint ${s.endpoint}`}`
}
