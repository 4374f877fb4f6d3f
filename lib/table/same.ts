import type { KubeObject, Service } from '../model/types.js'

// Whether a stored object equals the one a write brings: replaceAll skips unchanged objects, so a
// re-read of the same file touches nothing, and a reload of a big file compares every object.

/** True when `b` (as given) is what `a` (as stored) already is. */
export function sameObject (a: KubeObject | undefined, b: KubeObject): boolean {
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
    return sameJson(a, filled)
  }
  return sameJson(a, b)
}

/**
 * Equal as JSON values (what comparing JSON.stringify outputs would say, key order aside; an
 * undefined property counts as absent), without building the strings: a reload of an unchanged
 * file compares every object it holds.
 */
function sameJson (a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i])) return false
    return true
  }
  const x = a as Record<string, unknown>
  const y = b as Record<string, unknown>
  let n = 0
  for (const k in x) {
    if (x[k] === undefined) continue
    n++
    if (!Object.hasOwn(y, k) || !sameJson(x[k], y[k])) return false
  }
  for (const k in y) if (y[k] !== undefined) n--
  return n === 0
}
