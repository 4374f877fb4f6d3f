/**
 * Consistent hashing for the `hash` algorithm: a Maglev lookup table (Eisenbud et al., NSDI 2016)
 * over the endpoint keys, and a stable string hash for client addresses.
 *
 * Everything here depends only on the endpoint keys ("ip:port") and the client address — never on
 * the list order, the process or the time — so every node that holds the same endpoint set sends
 * one client to the same endpoint with no shared state. The table is built once per endpoint-set
 * change (1-5 ms for 65,537 slots and up to 100 endpoints, on 2 cores under load); a lookup is
 * one hash of the client address and one array read, allocating nothing.
 *
 * Table size: the smallest prime ≥ 65,536·2^k that is ≥ 100 × endpoints (65,537 up to 655
 * endpoints). The size only changes when the set crosses such a step, so adding or removing an
 * endpoint moves about 1/N of the clients (those of the endpoint that left, or the new
 * endpoint's share), plus a small Maglev remainder (a few tenths of a percent at 10 endpoints).
 */

/** Smallest table size; a prime, > 100 × 655. */
export const MAGLEV_MIN_SIZE = 65_537

const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193

/**
 * 32-bit FNV-1a of `s` from `from` (its UTF-16 code units), finished with murmur3's fmix32 so
 * that addresses differing in one digit spread over the whole range. No allocation.
 */
export function hashString (s: string, seed = 0, from = 0): number {
  let h = (FNV_OFFSET ^ seed) >>> 0
  for (let i = from; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, FNV_PRIME)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** The hash of a client address; an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) hashes as its IPv4 form. */
export function hashClient (ip: string): number {
  const mapped = ip.length > 7 && ip.charCodeAt(0) === 58 && ip.startsWith('::ffff:') && ip.includes('.', 7)
  return hashString(ip, 0, mapped ? 7 : 0)
}

function isPrime (n: number): boolean {
  if (n < 2) return false
  if (n % 2 === 0) return n === 2
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false
  return true
}

/** The table size for `n` endpoints (see the file comment). */
export function maglevSize (n: number): number {
  let base = 65_536
  while (base < 100 * n) base *= 2
  let m = base + 1
  while (!isPrime(m)) m++
  return m
}

/**
 * A Maglev table over `keys`: entry i is the index in `keys` of the endpoint that owns slot i.
 * The result does not depend on the order of `keys` (they are visited sorted), only on their values.
 */
export class MaglevTable {
  readonly size: number
  /** Slot → index into the key list the table was built from. */
  readonly entries: Uint16Array | Uint32Array

  constructor (keys: readonly string[]) {
    const n = keys.length
    const m = maglevSize(n)
    this.size = m
    const entries = n <= 0xffff ? new Uint16Array(m) : new Uint32Array(m)
    this.entries = entries
    if (n === 0) return
    // Visit endpoints in key order so that the list order (and so the node) does not matter.
    const order = keys.map((_, i) => i).sort((a, b) => (keys[a] as string) < (keys[b] as string) ? -1 : 1)
    const owner = new Int32Array(n)
    const pos = new Int32Array(n)
    const skip = new Int32Array(n)
    for (let j = 0; j < n; j++) {
      const o = order[j] as number
      const k = keys[o] as string
      owner[j] = o
      pos[j] = hashString(k, 0x9e3779b9) % m
      skip[j] = (hashString(k, 0x7f4a7c15) % (m - 1)) + 1
    }
    const filled = new Uint8Array(m)
    let left = m
    // Round after round, each endpoint takes the next free slot of its own permutation
    // (offset + i × skip mod m; skip < m, so one subtraction keeps it in range).
    for (;;) {
      for (let j = 0; j < n; j++) {
        const sk = skip[j] as number
        let c = pos[j] as number
        while (filled[c] === 1) {
          c += sk
          if (c >= m) c -= m
        }
        filled[c] = 1
        entries[c] = owner[j] as number
        c += sk
        pos[j] = c >= m ? c - m : c
        if (--left === 0) return
      }
    }
  }

  /** The key-list index for a client hash. */
  lookup (h: number): number {
    return this.entries[h % this.size] as number
  }
}
