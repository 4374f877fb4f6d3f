import type { Backend } from './backend.js'

export type Algorithm = 'round-robin' | 'random'

interface Sticky {
  backend: Backend
  expires: number
}

/**
 * Picks an endpoint for one service port.
 *
 * Round-robin walks the endpoint list (sorted, see table/endpoints.ts) with one cursor;
 * a changed endpoint set restarts the cursor at 0, as kube-proxy's balancer did.
 * With ClientIP affinity a client keeps its endpoint while the TTL runs (refreshed on use);
 * a failed dial (`reset`) drops the pin and moves the shared cursor on.
 * A pick allocates nothing: the affinity record is reused when it exists.
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

  /** True when picks depend on the client's address (ClientIP affinity). */
  get usesClientIP (): boolean {
    return this.affinity !== null
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
    if (!same) this.cursor = 0
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
   */
  pick (clientIP: string, reset: boolean, candidates?: Backend[]): Backend | undefined {
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
        const b = this.choose(eps, n)
        s.backend = b
        s.expires = now + this.affinityTtlMs
        return b
      }
      if (aff.size > 1024 && now - this.lastSweep > 1000) this.sweep(now)
      const b = this.choose(eps, n)
      aff.set(clientIP, { backend: b, expires: now + this.affinityTtlMs })
      return b
    }
    return this.choose(eps, n)
  }

  /** Forget a client's pin (its endpoint failed). */
  unpin (clientIP: string): void {
    this.affinity?.delete(clientIP)
  }

  private choose (eps: Backend[], n: number): Backend {
    if (this.algorithm === 'random') return eps[(this.random() * n) | 0] as Backend
    if (this.cursor >= n) this.cursor = 0
    const b = eps[this.cursor] as Backend
    this.cursor++
    return b
  }

  private sweep (now: number): void {
    this.lastSweep = now
    if (this.affinity === null) return
    for (const [ip, s] of this.affinity) if (s.expires <= now) this.affinity.delete(ip)
  }
}

function sameKeys (a: Backend[], b: Backend[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i]?.key !== b[i]?.key) return false
  return true
}
