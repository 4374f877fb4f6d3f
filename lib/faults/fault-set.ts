import type { FaultScope, ScopedToxic, Toxic, ToxicType } from './toxic.js'

/**
 * The toxics live on one service port (a FaultSet, `rt.faults`), as the data paths read them.
 * The registry (api/faults.ts) builds a new set for a port whenever its toxics change; a
 * connection keeps the ActiveToxic objects it was given, so an update (attributes changed in
 * place) or a removal (`removed`) reaches it, and an addition reaches new connections only.
 */

/** A toxic as the registry holds it: its `toxic` is mutated in place by update(). */
export interface ActiveToxic {
  readonly scope: FaultScope
  readonly toxic: Toxic
  /** Set once the toxic is removed: open connections skip it from then on. */
  removed: boolean
  /** What it did (listings): connections or sessions it applied to, bytes and datagrams it affected. */
  applied: number
  bytes: number
  datagrams: number
}

/** A new entry for the registry. */
export function activeToxic (scope: FaultScope, toxic: Toxic): ActiveToxic {
  return { scope, toxic, removed: false, applied: 0, bytes: 0, datagrams: 0 }
}

/**
 * What toxics did on one service port, by toxic type (svcproxy_fault_*_total). Kept on the
 * runtime (`rt.faultCounts`), so it outlives the sets built for it.
 */
export class FaultCounts {
  /** Connections (TCP) or sessions (UDP) a toxic was applied to, after its toxicity roll; `down`: dials it failed. */
  readonly applied = new Map<ToxicType, number>()
  /** TCP bytes a toxic delayed, throttled, sliced, dropped or cut off. */
  readonly bytes = new Map<ToxicType, number>()
  /** UDP datagrams a toxic dropped, delayed, duplicated or reordered. */
  readonly datagrams = new Map<ToxicType, number>()

  addApplied (type: ToxicType): void { this.applied.set(type, (this.applied.get(type) ?? 0) + 1) }
  addBytes (type: ToxicType, n: number): void { this.bytes.set(type, (this.bytes.get(type) ?? 0) + n) }
  addDatagrams (type: ToxicType, n = 1): void { this.datagrams.set(type, (this.datagrams.get(type) ?? 0) + n) }
}

const NONE: readonly ActiveToxic[] = []

/** The toxics that apply to one service port (already filtered to its protocol), by endpoint. */
export class FaultSet {
  /** Every toxic applying here: port-wide ones, then endpoint ones. */
  readonly all: readonly ActiveToxic[]
  readonly counts: FaultCounts
  /** Changes whenever a toxic of the proxy is added, changed or removed (a new set is built each time). */
  readonly version: number
  private readonly entryOf = new Map<Toxic, ActiveToxic>()
  private readonly toxicsByEndpoint = new Map<string, readonly Toxic[]>()
  private readonly commonToxics: readonly Toxic[]
  /** Port-wide toxics (no endpoint in their scope). */
  private readonly common: readonly ActiveToxic[]
  /** Per endpoint key: the port-wide toxics followed by that endpoint's own. */
  private readonly byEndpoint = new Map<string, readonly ActiveToxic[]>()
  /** A `down` toxic exists somewhere here. */
  readonly hasDown: boolean

  constructor (toxics: readonly ActiveToxic[], counts: FaultCounts, version: number) {
    this.counts = counts
    this.version = version
    for (const t of toxics) this.entryOf.set(t.toxic, t)
    const common = toxics.filter((t) => t.scope.endpoint === undefined)
    this.common = common
    this.commonToxics = common.map((t) => t.toxic)
    const own = new Map<string, ActiveToxic[]>()
    for (const t of toxics) {
      const ep = t.scope.endpoint
      if (ep === undefined) continue
      let list = own.get(ep)
      if (list === undefined) own.set(ep, (list = []))
      list.push(t)
    }
    for (const [ep, list] of own) {
      this.byEndpoint.set(ep, [...common, ...list])
      this.toxicsByEndpoint.set(ep, [...common, ...list].map((t) => t.toxic))
    }
    this.all = [...common, ...[...own.values()].flat()]
    this.hasDown = toxics.some((t) => t.toxic.type === 'down')
  }

  /** The toxics for a connection to `endpoint` (`ip:port`, Backend.key), in the order they were added (the TCP path keeps these). */
  entriesFor (endpoint: string): readonly ActiveToxic[] {
    return this.byEndpoint.get(endpoint) ?? (this.common.length === 0 ? NONE : this.common)
  }

  /** The same as plain toxics (live objects: update() changes their attributes in place); the UDP path reads these. */
  forEndpoint (endpoint: string): readonly Toxic[] {
    return this.toxicsByEndpoint.get(endpoint) ?? this.commonToxics
  }

  /** `t` was applied to a connection or session (after its toxicity roll). */
  applied (t: Toxic): void {
    const e = this.entryOf.get(t)
    if (e !== undefined) e.applied++
    this.counts.addApplied(t.type)
  }

  /** `datagrams` datagrams (UDP; 0 for TCP) of `bytes` bytes were affected by `t`: dropped, delayed, duplicated, held, throttled, cut. */
  affected (t: Toxic, datagrams: number, bytes: number): void {
    const e = this.entryOf.get(t)
    if (e !== undefined) { e.datagrams += datagrams; e.bytes += bytes }
    if (datagrams > 0) this.counts.addDatagrams(t.type, datagrams)
    if (bytes > 0) this.counts.addBytes(t.type, bytes)
  }

  /** A `down` toxic on `endpoint` that applies to this dial (toxicity rolled), or null. */
  down (endpoint: string, random: () => number): ActiveToxic | null {
    if (!this.hasDown) return null
    for (const t of this.entriesFor(endpoint)) {
      if (t.toxic.type === 'down' && !t.removed && rolls(t, random)) return t
    }
    return null
  }

  /** Active toxics by type (svcproxy_faults_active). */
  activeByType (): Map<ToxicType, number> {
    const m = new Map<ToxicType, number>()
    for (const t of this.all) if (!t.removed) m.set(t.toxic.type, (m.get(t.toxic.type) ?? 0) + 1)
    return m
  }

  /** As listings show them. */
  list (): ScopedToxic[] {
    return this.all.filter((t) => !t.removed).map(scoped)
  }
}

/** The toxicity roll: true if the toxic applies to this connection (session, dial). 0 and 1 use no randomness. */
export function rolls (t: ActiveToxic, random: () => number): boolean {
  const p = t.toxic.toxicity
  return p >= 1 || (p > 0 && random() < p)
}

/** `latency` ± `jitter` in ms (Toxiproxy: uniform in [latency - jitter, latency + jitter)), never below 0. */
export function jittered (attrs: Record<string, number | string>, random: () => number): number {
  const latency = attrs.latency as number
  const jitter = attrs.jitter as number
  if (!(jitter > 0)) return latency
  const d = latency + (random() * 2 - 1) * jitter
  return d > 0 ? d : 0
}

/** A copy for listings: callers never hold the live object. */
export function scoped (t: ActiveToxic): ScopedToxic {
  const x = t.toxic
  return { name: x.name, type: x.type, stream: x.stream, toxicity: x.toxicity, attributes: { ...x.attributes }, scope: { ...t.scope }, applied: t.applied, bytes: t.bytes, datagrams: t.datagrams }
}
