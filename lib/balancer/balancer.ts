import type { Backend } from './backend.js'
import { MaglevTable, hashClient } from './maglev.js'

/** Every algorithm, as --load-balancer, `loadBalancer` and the svcproxy.io/load-balancer annotation spell them. */
export const ALGORITHMS = ['round-robin', 'random', 'least-connections', 'p2c', 'hash'] as const
export type Algorithm = typeof ALGORITHMS[number]

/** True if `s` names an algorithm. */
export function isAlgorithm (s: unknown): s is Algorithm {
  return typeof s === 'string' && (ALGORITHMS as readonly string[]).includes(s)
}

interface Sticky {
  backend: Backend
  expires: number
}

/**
 * Picks an endpoint for one service port.
 *
 * - round-robin walks the endpoint list (sorted, see table/endpoints.ts) with one cursor;
 *   a changed endpoint set restarts the cursor at 0, as kube-proxy's balancer did.
 * - random: uniform over the list, from `random`.
 * - least-connections: the endpoint with the fewest `active` (open TCP connections, live UDP
 *   sessions); ties go round-robin (the scan starts at the shared cursor). O(endpoints) per pick.
 * - p2c: two distinct endpoints drawn from `random`, the one with fewer `active` wins (the first
 *   drawn on a tie). O(1) per pick.
 * - hash: a Maglev table (maglev.ts) over the endpoint keys, looked up by a stable hash of the
 *   client address: every node with the same endpoints sends a client to the same endpoint. A retry
 *   (`reset`) takes the next endpoint in list order after the client's own that it has not tried.
 * With ClientIP affinity a client keeps its endpoint while the TTL runs (refreshed on use);
 * a failed dial (`reset`) drops the pin and picks again by the algorithm.
 * A pick allocates nothing: the affinity record is reused when it exists, hash tables are built
 * when the endpoint set changes.
 */
export class Balancer {
  endpoints: Backend[] = []
  private extra: Backend[] = []
  algorithm: Algorithm
  private cursor = 0
  private affinity: Map<string, Sticky> | null = null
  private affinityTtlMs = 0
  private lastSweep = 0
  /** Clock for affinity expiry; a test sets its own. Called as-is, so it must not need `this`. */
  now: () => number = Date.now
  /** Uniform [0, 1) source for `random`; a test sets a seeded one. Called as-is, like `now`. */
  random: () => number = Math.random
  /** hash: the tables for `endpoints`, `extra`, and the last other candidate list (built on demand). */
  private table: MaglevTable | null = null
  private extraTable: MaglevTable | null = null
  private otherTable: MaglevTable | null = null
  private otherKeys: Backend[] = []

  constructor (algorithm: Algorithm) {
    this.algorithm = algorithm
  }

  /** Sets affinity; ttlMs 0 disables it. Changing only the TTL keeps pins but applies the new TTL. */
  setAffinity (ttlMs: number): void {
    if (ttlMs <= 0) {
      this.affinity = null
      this.affinityTtlMs = 0
      return
    }
    if (this.affinity === null) this.affinity = new Map()
    else if (ttlMs !== this.affinityTtlMs) {
      // Re-base existing pins on the new TTL (kubernetes#107398: a changed timeout was ignored).
      const now = this.now()
      for (const s of this.affinity.values()) s.expires = Math.min(s.expires, now + ttlMs)
    }
    this.affinityTtlMs = ttlMs
  }

  get affinityTtl (): number {
    return this.affinityTtlMs
  }

  /** True when picks depend on the client's address (ClientIP affinity, or the hash algorithm). */
  get usesClientIP (): boolean {
    return this.affinity !== null || this.algorithm === 'hash'
  }

  get affinityEntries (): number {
    return this.affinity === null ? 0 : this.affinity.size
  }

  /**
   * Replaces the endpoint set. Returns true when it differed (cursor reset, stale pins dropped).
   * `extra` are endpoints reachable only as pick() candidates (a node's own serving-and-
   * terminating endpoints under traffic policy Local): pins to them stay live.
   */
  setEndpoints (next: Backend[], extra: Backend[] = []): boolean {
    const same = sameKeys(this.endpoints, next)
    const sameExtra = sameKeys(this.extra, extra)
    this.endpoints = next
    this.extra = extra
    if (!same) {
      this.cursor = 0
      this.table = null
    }
    if (!sameExtra) this.extraTable = null
    if (this.algorithm === 'hash' && next.length > 0) {
      // Built here, off the data path (about a millisecond): the first pick after a change finds it
      // ready. The table for `extra` (traffic policy Local) is the same one when the sets match
      // (every endpoint on this node), else built by the first pick that needs it.
      const table = this.tableFor(next)
      if (this.extraTable === null && sameKeys(extra, next)) this.extraTable = table
    }
    if (this.affinity !== null && (!same || !sameExtra)) {
      const live = new Map<string, Backend>()
      for (const b of extra) live.set(b.key, b)
      for (const b of next) live.set(b.key, b)
      for (const [ip, s] of this.affinity) {
        // Point the pin at the new Backend object (carries the live counters), or drop it.
        const nb = live.get(s.backend.key)
        if (nb === undefined) this.affinity.delete(ip)
        else s.backend = nb
      }
    }
    return !same
  }

  /**
   * Next endpoint for a client, or undefined when there is none.
   * `reset` is set on a retry after a failed dial: ignore and replace the client's pin.
   * `tried`: endpoints this connection already failed on; `hash` skips them (the other
   * algorithms leave skipping to the caller).
   */
  pick (clientIP: string, reset: boolean, candidates?: Backend[], tried?: readonly Backend[] | null): Backend | undefined {
    const eps = candidates ?? this.endpoints
    const n = eps.length
    if (n === 0) return undefined
    const aff = this.affinity
    if (aff !== null) {
      const now = this.now()
      const s = aff.get(clientIP)
      if (s !== undefined) {
        if (!reset && s.expires > now && (candidates === undefined || candidates.includes(s.backend))) {
          s.expires = now + this.affinityTtlMs
          s.backend.affinityHits++
          return s.backend
        }
        const b = this.choose(eps, n, clientIP, reset, tried)
        s.backend = b
        s.expires = now + this.affinityTtlMs
        return b
      }
      if (aff.size > 1024 && now - this.lastSweep > 1000) this.sweep(now)
      const b = this.choose(eps, n, clientIP, reset, tried)
      aff.set(clientIP, { backend: b, expires: now + this.affinityTtlMs })
      return b
    }
    return this.choose(eps, n, clientIP, reset, tried)
  }

  /** Forget a client's pin (its endpoint failed). */
  unpin (clientIP: string): void {
    this.affinity?.delete(clientIP)
  }

  /**
   * What pick(clientIP, false, candidates) would return now, moving nothing: no cursor, pin,
   * counter or random draw changes (ServiceProxy.explain, api/explain.ts). `pinned`: the
   * client's ClientIP pin decided. null: it depends on random draws that cannot be foreseen
   * (random or p2c without createProxy({ seed })).
   */
  peek (clientIP: string, candidates?: Backend[]): { backend: Backend | undefined, pinned: boolean } | null {
    const eps = candidates ?? this.endpoints
    if (eps.length === 0) return { backend: undefined, pinned: false }
    const s = this.affinity?.get(clientIP)
    if (s !== undefined && s.expires > this.now() && (candidates === undefined || candidates.includes(s.backend))) return { backend: s.backend, pinned: true }
    const random = this.random
    const fork = (random as { fork?: () => () => number }).fork
    if ((this.algorithm === 'random' || this.algorithm === 'p2c') && typeof fork !== 'function') return null
    const cursor = this.cursor
    if (typeof fork === 'function') this.random = fork()
    try {
      return { backend: this.choose(eps, eps.length, clientIP, false, null), pinned: false }
    } finally {
      this.cursor = cursor
      this.random = random
    }
  }

  private choose (eps: Backend[], n: number, clientIP: string, reset: boolean, tried: readonly Backend[] | null | undefined): Backend {
    const a = this.algorithm
    if (a === 'round-robin') {
      if (this.cursor >= n) this.cursor = 0
      const b = eps[this.cursor] as Backend
      this.cursor++
      return b
    }
    if (a === 'random') return eps[(this.random() * n) | 0] as Backend
    if (a === 'least-connections') return this.leastConnections(eps, n)
    if (a === 'p2c') return this.powerOfTwo(eps, n)
    return this.hashed(eps, n, clientIP, reset, tried)
  }

  private leastConnections (eps: Backend[], n: number): Backend {
    let c = this.cursor
    if (c >= n) c = 0
    let best = c
    let min = (eps[c] as Backend).active
    for (let k = 1; k < n && min > 0; k++) {
      const i = c + k < n ? c + k : c + k - n
      const act = (eps[i] as Backend).active
      if (act < min) { min = act; best = i }
    }
    this.cursor = best + 1
    return eps[best] as Backend
  }

  private powerOfTwo (eps: Backend[], n: number): Backend {
    const i = (this.random() * n) | 0
    if (n === 1) return eps[0] as Backend
    let j = (this.random() * (n - 1)) | 0
    if (j >= i) j++
    const x = eps[i] as Backend
    const y = eps[j] as Backend
    return y.active < x.active ? y : x
  }

  private hashed (eps: Backend[], n: number, clientIP: string, reset: boolean, tried: readonly Backend[] | null | undefined): Backend {
    const own = this.tableFor(eps).lookup(hashClient(clientIP))
    if (!reset || n === 1) return eps[own] as Backend
    // A retry: the client's own endpoint if it was not tried, else the next untried one in list order.
    if (tried !== null && tried !== undefined) {
      for (let k = 0; k < n; k++) {
        const b = eps[own + k < n ? own + k : own + k - n] as Backend
        if (!tried.includes(b)) return b
      }
    }
    return eps[own + 1 < n ? own + 1 : 0] as Backend
  }

  /** The hash table for a candidate list: endpoints' and extra's are kept until their set changes. */
  private tableFor (eps: Backend[]): MaglevTable {
    if (eps === this.endpoints) return (this.table ??= tableOf(eps))
    if (eps === this.extra) return (this.extraTable ??= tableOf(eps))
    if (this.otherTable === null || !sameKeys(this.otherKeys, eps)) {
      this.otherKeys = eps.slice()
      this.otherTable = tableOf(eps)
    }
    return this.otherTable
  }

  private sweep (now: number): void {
    this.lastSweep = now
    if (this.affinity === null) return
    for (const [ip, s] of this.affinity) if (s.expires <= now) this.affinity.delete(ip)
  }
}

function tableOf (eps: Backend[]): MaglevTable {
  return new MaglevTable(eps.map((b) => b.key))
}

function sameKeys (a: Backend[], b: Backend[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i]?.key !== b[i]?.key) return false
  return true
}
