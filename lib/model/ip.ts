// Address syntax as the API server accepts it. Hand-written rather than node:net
// so the rules (no leading zeros, no zone ids) are explicit and cannot drift with
// the Node version.

const OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
const IPV4 = new RegExp(`^${OCTET}(?:\\.${OCTET}){3}$`)
const HEXTET = /^[0-9a-fA-F]{1,4}$/

/** Dotted-quad IPv4; octets with leading zeros ("010") are refused, since they are ambiguous (octal). */
export function isIPv4 (s: string): boolean {
  return typeof s === 'string' && s.length <= 15 && IPV4.test(s)
}

/** IPv6 in any textual form RFC 4291 allows, including `::` and a trailing IPv4 part; zone ids (`%eth0`) are refused. */
export function isIPv6 (s: string): boolean {
  if (typeof s !== 'string' || s.length < 2 || s.length > 45) return false
  const gap = s.indexOf('::')
  if (gap !== -1 && s.indexOf('::', gap + 1) !== -1) return false
  let parts: string[]
  if (gap === -1) {
    parts = s.split(':')
  } else {
    const head = s.slice(0, gap)
    const tail = s.slice(gap + 2)
    parts = [...(head === '' ? [] : head.split(':')), ...(tail === '' ? [] : tail.split(':'))]
  }
  let groups = 0
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] ?? ''
    if (i === parts.length - 1 && p.includes('.')) {
      if (!isIPv4(p)) return false
      groups += 2
    } else if (HEXTET.test(p)) {
      groups += 1
    } else {
      return false
    }
  }
  // `::` must stand for at least one zero group, as Go's netip requires.
  return gap === -1 ? groups === 8 : groups <= 7
}

export function isIP (s: string): boolean {
  return isIPv4(s) || isIPv6(s)
}

/** `10.0.0.0/8`, `2001:db8::/32`: an address and a prefix length its family allows. */
export function isCIDR (s: string): boolean {
  if (typeof s !== 'string') return false
  const slash = s.indexOf('/')
  if (slash === -1) return false
  const bits = s.slice(slash + 1)
  if (!/^\d{1,3}$/.test(bits)) return false
  const f = ipFamily(s.slice(0, slash))
  return f !== 0 && Number(bits) <= (f === 4 ? 32 : 128)
}

export function ipFamily (s: string): 4 | 6 | 0 {
  if (isIPv4(s)) return 4
  if (isIPv6(s)) return 6
  return 0
}
