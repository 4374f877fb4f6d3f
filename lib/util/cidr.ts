import { isIP } from 'node:net'
import { ConfigError } from '../errors.js'

// IPv4 only for allocation ranges: the loopback default and real service CIDRs
// are IPv4 in every setup we target; IPv6 ranges can come later without API change.

export interface Cidr {
  base: number // network address as uint32
  bits: number
  size: number // number of addresses in the range
}

export function ipv4ToInt (ip: string): number {
  const p = ip.split('.')
  return ((Number(p[0]) << 24) >>> 0) + (Number(p[1]) << 16) + (Number(p[2]) << 8) + Number(p[3])
}

export function intToIpv4 (n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
}

export function parseCidr (text: string, flag = 'CIDR'): Cidr {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text.trim())
  if (m === null || isIP(m[1] ?? '') !== 4 || Number(m[2]) > 32) {
    throw new ConfigError(`${flag}: expected an IPv4 CIDR such as 127.96.0.0/16, got "${text}"`)
  }
  const bits = Number(m[2])
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0
  const base = (ipv4ToInt(m[1] ?? '') & mask) >>> 0
  return { base, bits, size: 2 ** (32 - bits) }
}

export function cidrContains (c: Cidr, ip: string): boolean {
  if (isIP(ip) !== 4) return false
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
