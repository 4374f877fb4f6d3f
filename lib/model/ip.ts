import { isIP as netIsIP } from 'node:net'
import { networkInterfaces } from 'node:os'
import { ConfigError } from '../errors.js'

// Address syntax as the API server accepts it. Hand-written rather than node:net
// so the rules (no leading zeros, no zone ids) are explicit and cannot drift with
// the Node version.

const HEXTET = /^[0-9a-fA-F]{1,4}$/

/**
 * A dotted-quad IPv4 address as its uint32 value, or -1 when `s` is not one: four ASCII-decimal
 * octets 0-255 without leading zeros. A loop over char codes, not a regular expression: every
 * endpoint of every record passes here (issue 17.3: 100,000 endpoints loaded in under 1 s).
 */
function parseIPv4 (s: string): number {
  const n = s.length
  if (n < 7 || n > 15) return -1
  let value = 0
  let octet = 0
  let digits = 0
  let dots = 0
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c === 46) { // '.'
      if (digits === 0 || dots === 3) return -1
      value = value * 256 + octet
      octet = 0
      digits = 0
      dots++
    } else if (c >= 48 && c <= 57) {
      if (digits === 1 && octet === 0) return -1 // a leading zero ("010")
      octet = octet * 10 + (c - 48)
      digits++
      if (octet > 255) return -1
    } else {
      return -1
    }
  }
  return dots === 3 && digits > 0 ? value * 256 + octet : -1
}

/** Dotted-quad IPv4; octets with leading zeros ("010") are refused, since they are ambiguous (octal). */
export function isIPv4 (s: string): boolean {
  return typeof s === 'string' && parseIPv4(s) >= 0
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

/** The address's bytes (4 or 16; an IPv4-mapped IPv6 address as its IPv4 bytes); null when not an IP. */
function ipBytes (s: string): number[] | null {
  if (isIPv4(s)) return s.split('.').map(Number)
  if (!isIPv6(s)) return null
  const gap = s.indexOf('::')
  const groups = (text: string): number[] => {
    const out: number[] = []
    for (const p of text === '' ? [] : text.split(':')) {
      if (p.includes('.')) out.push(...p.split('.').map(Number))
      else { const n = parseInt(p, 16); out.push(n >> 8, n & 255) }
    }
    return out
  }
  const head = groups(gap === -1 ? s : s.slice(0, gap))
  const tail = gap === -1 ? [] : groups(s.slice(gap + 2))
  const b = [...head, ...new Array<number>(16 - head.length - tail.length).fill(0), ...tail]
  const mapped = b.slice(0, 10).every((x) => x === 0) && b[10] === 255 && b[11] === 255
  return mapped ? b.slice(12) : b
}

/**
 * The special ranges the API server's checks name (Go's net.IP predicates): `unspecified`
 * (0.0.0.0, ::), `link-local` (169.254.0.0/16, fe80::/10), `link-local multicast` (224.0.0.0/24,
 * ff02::/16), `multicast` (the rest of 224.0.0.0/4 and ff00::/8); `unicast` for any other IP.
 */
export type AddressClass = 'unspecified' | 'link-local' | 'link-local multicast' | 'multicast' | 'unicast'

export function addressClass (ip: string): AddressClass {
  const v4 = typeof ip === 'string' ? parseIPv4(ip) : -1
  if (v4 >= 0) { // IPv4 without building a byte array (the common case, once per endpoint)
    const a = v4 >>> 24
    if (v4 === 0) return 'unspecified'
    if (a === 169 && ((v4 >>> 16) & 255) === 254) return 'link-local'
    if (a === 224 && ((v4 >>> 8) & 0xffff) === 0) return 'link-local multicast'
    return a >= 224 && a <= 239 ? 'multicast' : 'unicast'
  }
  const b = ipBytes(ip)
  if (b === null) return 'unicast'
  const [b0 = 0, b1 = 0, b2 = 0] = b
  if (b.every((x) => x === 0)) return 'unspecified'
  if (b.length === 4) {
    if (b0 === 169 && b1 === 254) return 'link-local'
    if (b0 === 224 && b1 === 0 && b2 === 0) return 'link-local multicast'
    return b0 >= 224 && b0 <= 239 ? 'multicast' : 'unicast'
  }
  if (b0 === 0xfe && (b1 & 0xc0) === 0x80) return 'link-local'
  if (b0 === 0xff) return (b1 & 0x0f) === 0x02 ? 'link-local multicast' : 'multicast'
  return 'unicast'
}

/**
 * True for an address of this host: unspecified, loopback (127/8, ::1), or on an interface.
 * Reads the interfaces (a system call): for table updates, never the data path.
 */
export function isLocalAddress (ip: string): boolean {
  const b = ipBytes(ip)
  if (b === null) return false
  if (b.every((x) => x === 0) || (b.length === 4 && b[0] === 127) || (b.length === 16 && b.slice(0, 15).every((x) => x === 0) && b[15] === 1)) return true
  const want = b.join('.')
  return Object.values(networkInterfaces()).some((list) => list?.some((a) => ipBytes(a.address)?.join('.') === want) ?? false)
}

/** Where an address is used: what svcproxy binds, or what it dials. */
export type AddressUse = 'service' | 'external' | 'endpoint'

/**
 * Why an address is refused for `use`, or '' when it is not. The API server refuses the
 * unspecified address, link-local unicast and link-local multicast for externalIPs and endpoints
 * (ValidateNonSpecialIP); a clusterIP outside the service range is refused by its allocator,
 * which never hands out the unspecified address. svcproxy binds service addresses, so it also
 * refuses every multicast address there, and the unspecified address everywhere (a listener on
 * it takes every interface; a dial to it reaches this host). Loopback stays allowed for all:
 * svcproxy runs its services on 127/8.
 */
export function refusedAddress (ip: string, use: AddressUse): string {
  const c = addressClass(ip)
  if (c === 'unicast') return ''
  const got = JSON.stringify(ip)
  switch (c) {
    case 'unspecified':
      return `expected the address of one host, got ${got} (the unspecified address stands for every address of this node)`
    case 'multicast':
      return use === 'endpoint' ? '' : `expected a unicast address, got ${got} (multicast: nothing can listen there)`
    case 'link-local multicast':
      return `expected a unicast address outside 224.0.0.0/24 and ff02::/16, got ${got} (link-local multicast)`
    case 'link-local':
      return use === 'service' ? '' : `expected an address outside the link-local ranges 169.254.0.0/16 and fe80::/10 (the API server refuses them here), got ${got}`
  }
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

// Allocation ranges (IPv4 only: the loopback default and real service CIDRs are IPv4 in every
// setup we target; IPv6 ranges can come later without API change).
export interface Cidr {
  base: number // network address as uint32
  bits: number
  size: number // number of addresses in the range
}

export function ipv4ToInt (ip: string): number {
  const v = parseIPv4(ip)
  if (v >= 0) return v
  const p = ip.split('.')
  return ((Number(p[0]) << 24) >>> 0) + (Number(p[1]) << 16) + (Number(p[2]) << 8) + Number(p[3])
}

export function intToIpv4 (n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
}

export function parseCidr (text: string, flag = 'CIDR'): Cidr {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text.trim())
  if (m === null || netIsIP(m[1] ?? '') !== 4 || Number(m[2]) > 32) {
    throw new ConfigError(`${flag}: expected an IPv4 CIDR such as 127.96.0.0/16, got "${text}"`)
  }
  const bits = Number(m[2])
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0
  const base = (ipv4ToInt(m[1] ?? '') & mask) >>> 0
  return { base, bits, size: 2 ** (32 - bits) }
}

export function cidrContains (c: Cidr, ip: string): boolean {
  if (netIsIP(ip) !== 4) return false
  const n = ipv4ToInt(ip)
  return n >= c.base && n < c.base + c.size
}

/** FNV-1a, 32 bit: a stable hash so allocations do not depend on process or order. */
export function fnv1a (s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h >>> 0
}
