import type { Socket } from 'node:dgram'
import { sendConnectedWith, type UvUdpHandle } from '../internals/uv-udp.js'
import type { ProxyProtocolMode } from '../model/annotations.js'
import type { Protocol } from '../model/types.js'
import type { DataPlaneContext, FrontendSpec } from './contract.js'
import type { ServicePortRuntime } from './runtime.js'

/**
 * The PROXY protocol (HAProxy's proxy-protocol.txt), sender side: a header written to the
 * endpoint before any byte of the client's, telling it the client's address and the address
 * the client connected to (the clusterIP, node address or load-balancer IP, and its port).
 *
 * - v1: one text line, `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` (TCP6 for IPv6; `PROXY
 *   UNKNOWN\r\n` when the two addresses are not of one family). TCP only.
 * - v2: binary. 12-byte signature, 0x21 (version 2, PROXY), family/transport (0x11 TCP/IPv4,
 *   0x12 UDP/IPv4, 0x21 TCP/IPv6, 0x22 UDP/IPv6), 16-bit length of what follows, then the
 *   addresses: src, dst, sport, dport (12 bytes for IPv4, 36 for IPv6). No TLVs. For UDP the
 *   same header precedes every datagram (as HAProxy and Envoy send it).
 *
 * What is fixed per frontend (signature, family, the destination's bytes, v1's tail) is built
 * once per destination; a connection copies it into one small Buffer and writes the client's
 * address into it. A UDP session builds its header once; its datagrams reuse it.
 */

export const V2_SIGNATURE: Buffer = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
/** Version 2, command PROXY. */
export const V2_PROXY = 0x21
/** Family/transport bytes. */
export const V2_TCP4 = 0x11
export const V2_UDP4 = 0x12
export const V2_TCP6 = 0x21
export const V2_UDP6 = 0x22
/** AF_UNSPEC: the receiver uses the connection's own addresses (v2's `PROXY UNKNOWN`). */
export const V2_UNSPEC = 0x00
/** Bytes before the addresses: signature, version/command, family, length. */
const V2_HEAD = 16
/** The longest v1 line, CRLF included (the spec's bound). */
export const V1_MAX_LENGTH = 107

/** The frontend a header is built for: its address (the destination) and the port it bound. */
export interface HeaderHost {
  readonly spec: FrontendSpec
  readonly boundPort: number
}

/**
 * Where a wildcard listener (0.0.0.0, ::; node ports) learns the address the client reached:
 * a uv handle (`getsockname`) or a net.Socket (`localAddress`, `localPort`).
 */
export interface LocalAddressSource {
  getsockname?: (out: { address?: string, port?: number }) => number
  readonly localAddress?: string
  readonly localPort?: number
}

/** The header a TCP connection of `rt` gets: the service's annotation, else the daemon's default. */
export function tcpMode (rt: ServicePortRuntime, ctx: DataPlaneContext): ProxyProtocolMode {
  return rt.proxyProtocol ?? ctx.proxyProtocol
}

/** The header a UDP session of `rt` gets: v2 or none (v1 has no UDP form; a v1 default leaves UDP ports without one). */
export function udpMode (rt: ServicePortRuntime, ctx: DataPlaneContext): ProxyProtocolMode {
  return (rt.proxyProtocol ?? ctx.proxyProtocol) === 'v2' ? 'v2' : 'none'
}

/** The mode in force for a port of `protocol` (status): the annotation's (null: absent), else the default; UDP: v2 or none. */
export function effectiveMode (annotation: ProxyProtocolMode | null, dflt: ProxyProtocolMode, protocol: Protocol): ProxyProtocolMode {
  const m = annotation ?? dflt
  return protocol === 'UDP' && m !== 'v2' ? 'none' : m
}

function isWildcard (ip: string): boolean {
  return ip === '0.0.0.0' || ip === '::'
}

/** The header for one TCP connection accepted by `host` from srcIP:srcPort; `sock` answers for a wildcard listener. */
export function tcpHeader (host: HeaderHost, mode: 'v1' | 'v2', srcIP: string, srcPort: number, sock: LocalAddressSource): Buffer {
  let ip = host.spec.host
  let port = host.boundPort
  if (isWildcard(ip)) {
    if (typeof sock.getsockname === 'function') {
      const out: { address?: string, port?: number } = {}
      sock.getsockname(out)
      ip = out.address ?? ip
      port = out.port ?? port
    } else {
      ip = sock.localAddress ?? ip
      port = sock.localPort ?? port
    }
  }
  const d = destinationOf(host, 'TCP', ip, port)
  return mode === 'v1' ? d.v1(srcIP, srcPort) : d.v2(srcIP, srcPort)
}

/**
 * The v2 header of a UDP session (the same for each of its datagrams). On a wildcard listener
 * the destination is that wildcard: Node reports no datagram's destination address.
 */
export function udpHeader (host: HeaderHost, srcIP: string, srcPort: number): Buffer {
  return destinationOf(host, 'UDP', host.spec.host, host.boundPort).v2(srcIP, srcPort)
}

// The last destination built per frontend: one for a frontend on a service address, the node
// address last reached for a wildcard one.
const destinations = new WeakMap<HeaderHost, Destination>()

function destinationOf (host: HeaderHost, transport: Protocol, ip: string, port: number): Destination {
  let d = destinations.get(host)
  if (d === undefined || d.ip !== ip || d.port !== port) {
    d = new Destination(transport, ip, port)
    destinations.set(host, d)
  }
  return d
}

/** What is fixed for one destination address: v2's bytes up to the source address, v1's text after it. */
class Destination {
  readonly ip: string
  readonly port: number
  private readonly v4: boolean
  private readonly template: Buffer
  private readonly mid: string
  private readonly tail: string

  constructor (transport: Protocol, ip: string, port: number) {
    this.ip = ip
    this.port = port
    const dst = unmapped(ip)
    this.v4 = !dst.includes(':')
    const fam = transport === 'UDP' ? (this.v4 ? V2_UDP4 : V2_UDP6) : (this.v4 ? V2_TCP4 : V2_TCP6)
    const alen = this.v4 ? 12 : 36
    const t = Buffer.alloc(V2_HEAD + alen)
    V2_SIGNATURE.copy(t, 0)
    t[12] = V2_PROXY
    t[13] = fam
    t.writeUInt16BE(alen, 14)
    if (this.v4) { putIPv4(t, V2_HEAD + 4, dst); t.writeUInt16BE(port, V2_HEAD + 10) } else { putIPv6(t, V2_HEAD + 16, dst); t.writeUInt16BE(port, V2_HEAD + 34) }
    this.template = t
    this.mid = ` ${dst} `
    this.tail = ` ${port}\r\n`
  }

  v1 (srcIP: string, srcPort: number): Buffer {
    const src = this.source(srcIP)
    if (src === '') return Buffer.from('PROXY UNKNOWN\r\n', 'latin1')
    return Buffer.from((this.v4 ? 'PROXY TCP4 ' : 'PROXY TCP6 ') + src + this.mid + srcPort + this.tail, 'latin1')
  }

  v2 (srcIP: string, srcPort: number): Buffer {
    const src = this.source(srcIP)
    if (src === '') return unspecV2()
    const t = this.template
    const b = Buffer.allocUnsafe(t.length)
    t.copy(b, 0)
    if (this.v4) { putIPv4(b, V2_HEAD, src); b.writeUInt16BE(srcPort, V2_HEAD + 8) } else { putIPv6(b, V2_HEAD, src); b.writeUInt16BE(srcPort, V2_HEAD + 32) }
    return b
  }

  /** The source in the destination's family ('' when it has none: UNKNOWN / UNSPEC). */
  private source (ip: string): string {
    const v4 = !ip.includes(':')
    if (v4 === this.v4) return ip
    if (this.v4) {
      const u = unmapped(ip)
      return u.includes(':') ? '' : u
    }
    return ''
  }
}

function unspecV2 (): Buffer {
  const b = Buffer.alloc(V2_HEAD)
  V2_SIGNATURE.copy(b, 0)
  b[12] = V2_PROXY
  b[13] = V2_UNSPEC
  return b
}

/** `::ffff:1.2.3.4` → `1.2.3.4` (a dual-stack listener's IPv4 client); anything else as it is. */
export function unmapped (ip: string): string {
  return ip.length > 7 && ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip.toLowerCase()
}

/** Encodes a v1 line (tests, tools): TCP4/TCP6 by the addresses' family, UNKNOWN when they differ. */
export function encodeV1 (srcIP: string, srcPort: number, dstIP: string, dstPort: number): Buffer {
  return new Destination('TCP', dstIP, dstPort).v1(srcIP, srcPort)
}

/** Encodes a v2 header (tests, tools). */
export function encodeV2 (transport: Protocol, srcIP: string, srcPort: number, dstIP: string, dstPort: number): Buffer {
  return new Destination(transport, dstIP, dstPort).v2(srcIP, srcPort)
}

/** Writes an IPv4 literal's 4 bytes at `off` (input is a valid literal: the kernel's or the model's). */
function putIPv4 (b: Buffer, off: number, ip: string): void {
  let n = 0
  let i = off
  for (let k = 0; k < ip.length; k++) {
    const c = ip.charCodeAt(k)
    if (c === 46) { b[i++] = n; n = 0 } else n = n * 10 + (c - 48)
  }
  b[i] = n
}

/** Writes an IPv6 literal's 16 bytes at `off`: `::` compression, an embedded IPv4 tail, a zone (`%eth0`) dropped. */
function putIPv6 (b: Buffer, off: number, ip: string): void {
  const pct = ip.indexOf('%')
  const s = pct < 0 ? ip : ip.slice(0, pct)
  const gap = s.indexOf('::')
  const head = groupsOf(gap < 0 ? s : s.slice(0, gap))
  const tail = gap < 0 ? [] : groupsOf(s.slice(gap + 2))
  b.fill(0, off, off + 16)
  for (let g = 0; g < head.length; g++) b.writeUInt16BE(head[g] as number, off + 2 * g)
  for (let g = 0; g < tail.length; g++) b.writeUInt16BE(tail[g] as number, off + 16 - 2 * (tail.length - g))
}

function groupsOf (s: string): number[] {
  const out: number[] = []
  if (s === '') return out
  for (const p of s.split(':')) {
    if (p.includes('.')) {
      const v4 = Buffer.alloc(4)
      putIPv4(v4, 0, p)
      out.push(v4.readUInt16BE(0), v4.readUInt16BE(2))
    } else out.push(parseInt(p, 16))
  }
  return out
}

/** One datagram to a session's endpoint behind its v2 header: both buffers in one sendmsg on the uv handle, else dgram's buffer list. */
export function sendWithHeader (raw: UvUdpHandle | null, sock: Socket, head: Buffer, msg: Buffer): void {
  if (raw !== null) sendConnectedWith(raw, head, msg)
  else sock.send([head, msg])
}

/**
 * Headers held back for one loop turn, so the client's first bytes can go in the same write (one
 * segment instead of two: most of the header's cost on loopback). A connection whose endpoint
 * answers is queued in the poll phase of turn k; the client is read from in the poll phase of
 * turn k+1 (its bytes are usually already there: it wrote right after connecting); what is still
 * held in the check phase of turn k+1 is sent alone (a client that waits for the server to speak
 * gets its greeting two turns later). One setImmediate per turn with headers held, none per connection.
 */
export class HeldHeaders<T> {
  private fresh: T[] = []
  private due: T[] = []
  private scheduled = false
  private readonly flush: (item: T) => void
  private readonly tick = (): void => { this.turn() }

  /** `flush(item)` sends the item's header if it is still held. */
  constructor (flush: (item: T) => void) {
    this.flush = flush
  }

  hold (item: T): void {
    this.fresh.push(item)
    if (!this.scheduled) { this.scheduled = true; setImmediate(this.tick) }
  }

  private turn (): void {
    const due = this.due
    for (let i = 0; i < due.length; i++) this.flush(due[i] as T)
    due.length = 0
    this.due = this.fresh
    this.fresh = due
    if (this.due.length > 0) setImmediate(this.tick)
    else this.scheduled = false
  }
}
