import type { Socket } from 'node:dgram'
import { processBinding } from './binding.js'

/**
 * The UDP fast path: a bound dgram socket's libuv handle (udp_wrap), for receiving and sending
 * datagrams without dgram's per-datagram JavaScript (the 'message' event, send()'s argument
 * checks, a new request object and list array per send). dgram still binds, connects and
 * closes the socket, and reports bind errors; only the data path goes to the handle.
 *
 * Like the TCP uv engine (uv.ts) this reaches below the documented API: the handle is dgram's
 * `kStateSymbol` state and the request class comes from `process.binding('udp_wrap')`. Each
 * is checked; when anything differs `udpHandleOf` returns null and the dgram API is used.
 */

/** node's UDPWrap (on a udp6 socket dgram has made `send` the IPv6 one). send() returns msg size + 1 when sent at once, 0 when queued, or a negative errno. */
export interface UvUdpHandle {
  onmessage: (this: never, nread: number, handle: UvUdpHandle, buf: Buffer | undefined, rinfo: { address: string, port: number } | undefined) => void
  send: ((req: UvSendReq, list: Buffer[], count: number, port: number, ip: string, hasCallback: boolean) => number) &
  ((req: UvSendReq, list: Buffer[], count: number, hasCallback: boolean) => number)
  getSendQueueSize: () => number
}

/** A send request; `buffer` keeps the datagram alive while a queued send still needs it. */
export interface UvSendReq { buffer: Buffer | null }

type SendReqCtor = new () => UvSendReq

function loadSendWrap (): SendReqCtor | null {
  const udp = processBinding('udp_wrap')
  if (udp === null) return null
  try {
    const SendWrap = udp.SendWrap as SendReqCtor | undefined
    const UDP = udp.UDP as (new () => unknown) | undefined
    if (typeof SendWrap !== 'function' || typeof UDP !== 'function') return null
    const proto = UDP.prototype as Record<string, unknown>
    for (const m of ['send', 'send6', 'recvStart', 'getSendQueueSize']) if (typeof proto[m] !== 'function') return null
    return SendWrap
  } catch {
    return null
  }
}

// Loaded on the first socket that asks (never at import: see uv-tcp.ts).
let SendWrap: SendReqCtor | null | undefined

/** The handle of a bound (or connected) dgram socket, or null where the fast path is not available. */
export function udpHandleOf (sock: Socket): UvUdpHandle | null {
  if (SendWrap === undefined) SendWrap = loadSendWrap()
  if (SendWrap === null) return null
  for (const sym of Object.getOwnPropertySymbols(sock)) {
    if (sym.description !== 'state symbol') continue
    const state = (sock as unknown as Record<symbol, { handle?: unknown } | undefined>)[sym]
    const h = state?.handle as Partial<UvUdpHandle> | null | undefined
    if (h !== null && h !== undefined && typeof h.send === 'function' && typeof h.onmessage === 'function') return h as UvUdpHandle
    return null
  }
  return null
}

// One request object serves every send that completes at once (nearly all of them); a send
// the kernel could not take at once keeps its request, and the next send gets a new one.
let req: UvSendReq | null = null
const list: Buffer[] = []

function request (): UvSendReq {
  return req ??= new (SendWrap as SendReqCtor)()
}

/** True when the send was queued (the kernel could not take it at once). */
function sent (r: UvSendReq, result: number): boolean {
  // Queued (0), the request and its buffer belong to libuv now; on an error (< 0) it may have
  // been bound and released: either way the next send takes a fresh one.
  if (result <= 0) req = null
  else r.buffer = null
  list[0] = EMPTY
  return result === 0
}

const EMPTY = Buffer.alloc(0)

/** Sends on a connected handle. A failed send is dropped like a lost datagram, as dgram does without a callback. */
export function sendConnected (h: UvUdpHandle, buf: Buffer): boolean {
  const r = request()
  r.buffer = buf
  list[0] = buf
  return sent(r, h.send(r, list, 1, false))
}

/**
 * Sends `head` and `buf` as one datagram on a connected handle (a PROXY protocol header, then
 * the payload: frontend/proxy-protocol.ts), with no copy and no allocation. `head` must outlive
 * the send (its session holds it); `buf` is held by the request while the send is queued.
 */
export function sendConnectedWith (h: UvUdpHandle, head: Buffer, buf: Buffer): boolean {
  const r = request()
  r.buffer = buf
  list[0] = head
  list[1] = buf
  const queued = sent(r, h.send(r, list, 2, false))
  list[1] = EMPTY
  return queued
}

/** Sends to ip:port (an IP literal of the handle's family); true if the send was queued. */
export function sendTo (h: UvUdpHandle, buf: Buffer, port: number, ip: string): boolean {
  const r = request()
  r.buffer = buf
  list[0] = buf
  return sent(r, h.send(r, list, 1, port, ip, false))
}
