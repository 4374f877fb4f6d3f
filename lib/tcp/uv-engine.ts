import type { Backend } from '../balancer/backend.js'
import type { CloseReason } from '../frontend/events.js'
import { acceptFailed, isFdExhaustion } from '../frontend/limits.js'
import { HeldHeaders, tcpHeader, tcpMode } from '../frontend/proxy-protocol.js'
import { sourceAllowed } from '../frontend/runtime.js'
import { peerOf, SHUTDOWN_DONE_AT_ONCE, UV_ENOTCONN, UV_EOF, type UvConnectReq, type UvShutdownReq, type UvTcpBinding, type UvTcpHandle, uvErrorName, uvTcp, type UvWriteReq } from '../internals/uv-tcp.js'
import { giveReadBuffer, LARGE_READ, SMALL_READ, takeReadBuffer } from './buffer-pool.js'
import { dial, dialFailed } from './dial.js'
import { noteAccepted, noteConnected, notePairFinished, PairBase, type PairHost } from './pair.js'

/**
 * TCP in the `uv` engine (the default): the data path on libuv handles (internals/uv-tcp.ts), no net.Socket.
 *
 * Per connection: one UvPair, two Sides, the two handles and their requests; reads go into
 * pooled buffers. A chunk read from one side is written to the other at once, from the read
 * callback. When that write cannot finish at once (the peer's socket buffer is full) the
 * source stops reading until it has: one write in flight per direction is the backpressure,
 * and it is also what keeps the read buffer untouched while the kernel still has to copy it.
 * A FIN read on one side becomes a shutdown of the other, queued by libuv behind its writes
 * (or a plain close of the other, when its own FIN is already in and nothing is queued to it).
 */

const kSide = Symbol('svcproxy.side')

type Handle = UvTcpHandle & { [kSide]: Side }
type WriteReq = UvWriteReq & { [kSide]: Side }
type ShutdownReq = UvShutdownReq & { [kSide]: Side }
type ConnectReq = UvConnectReq & { [kSide]: Side }

// Set by enableUvEngine() when a frontend of a proxy running this engine starts listening, so
// the hot path reads a module variable instead of asking for the bindings.
let uv: UvTcpBinding

/** Makes the bindings available to this engine; false when this Node lacks them (the node engine is then used). */
export function enableUvEngine (): boolean {
  const b = uvTcp()
  if (b === null) return false
  uv = b
  return true
}

/** One socket of a pair. */
class Side {
  readonly pair: UvPair
  readonly h: Handle
  readonly isClient: boolean
  peer!: Side
  /** The buffer reads land in (from the pool; back to it when the side closes). */
  buf: Buffer | null = null
  /** A request for writes to this side, reused while writes finish at once; null while one is in flight. */
  req: WriteReq | null = null
  /** A view of `buf` shorter than it, the last one written: the next read of that length reuses it. */
  view: Buffer | null = null
  /** A write to this side is in flight: its source (the peer) is not reading. */
  writing = false
  /** Reading was stopped by backpressure (not by EOF). */
  paused = false
  bytesRead = 0
  /** Its FIN was read. */
  readEnded = false
  /** A shutdown (our FIN to it) was issued / has completed. */
  shutting = false
  writeEnded = false
  closed = false

  constructor (pair: UvPair, h: UvTcpHandle, isClient: boolean) {
    this.pair = pair
    this.h = h as Handle
    this.h[kSide] = this
    this.isClient = isClient
    h.onread = onRead
  }
}

class UvPair extends PairBase {
  readonly client: Side
  backend: Side | null = null
  /** PROXY protocol header held for the client's first bytes (onFirstRead, flushHeader). */
  header: Buffer | null = null

  constructor (id: number, h: UvTcpHandle, fe: PairHost) {
    super(id, fe)
    this.client = new Side(this, h, true)
  }

  protected peer (): { address: string, port: number } {
    return this.client.closed ? { address: '', port: 0 } : peerOf(this.client.h)
  }

  bytesIn (): number { return this.client.bytesRead }
  bytesOut (): number { return this.backend?.bytesRead ?? 0 }
  queued (): number { return queuedOn(this.client) + (this.backend === null ? 0 : queuedOn(this.backend)) }
  abort (reason: CloseReason): void { abort(this, reason) }
  connect (b: Backend): string { return connect(this, b) }
  clientGone (): boolean { return false } // the client is not read from until the backend answers

  cancelDial (): void {
    const s = this.backend
    if (s === null) return
    closeSide(s, false) // a connect still pending is cancelled; its callback is then ignored
    this.backend = null
  }

  closeIdle (): void {
    if (this.reason === null) this.reason = 'idle-timeout'
    closeSide(this.client, false)
    if (this.backend !== null) closeSide(this.backend, false)
    notePairFinished(this)
  }
}

function queuedOn (s: Side): number {
  return s.closed ? 0 : s.h.writeQueueSize
}

/**
 * A connection accepted on the frontend's listening handle (its `onconnection`). `err` is a
 * failed accept (EMFILE and the like); the listener goes on. `noDelaySet`: the socket has
 * TCP_NODELAY from its listener already.
 */
export function acceptHandle (fe: PairHost, err: number, h: UvTcpHandle | undefined, noDelaySet: boolean): void {
  if (err !== 0 || h === undefined) {
    fe.acceptError(uvErrorName(err))
    return
  }
  // A client outside loadBalancerSourceRanges, or over --max-connections or the service's
  // limit: reset at once, counted.
  if ((fe.checksSource && !sourceAllowed(fe.rt, peerOf(h).address)) || !fe.admit()) { if (h.reset() !== 0) h.close(); return }
  if (!noDelaySet) h.setNoDelay(true)
  const p = new UvPair(fe.ctx.nextConnectionId(), h, fe)
  noteAccepted(p)
  dial(p)
}

function connect (p: UvPair, b: Backend): string {
  const h = uv.newSocket()
  h.setNoDelay(true) // applied when connect creates the socket
  const s = new Side(p, h, false)
  s.peer = p.client
  p.client.peer = s
  p.backend = s
  const req = uv.newConnectReq() as ConnectReq
  req.oncomplete = onConnect
  req[kSide] = s
  const err = b.ip.includes(':') ? h.connect6(req, b.ip, b.port) : h.connect(req, b.ip, b.port)
  if (err === 0) {
    // Read from the connect on: one epoll entry for both (reads started after it cost libuv a failing re-add and a MOD).
    if (h.readStart() === 0) useBuffer(s)
    return ''
  }
  // No descriptor for the backend socket: the same episode as a failed accept.
  const code = uvErrorName(err)
  if (isFdExhaustion(code)) acceptFailed(p.fe.ctx.limits, p.fe.ctx.logger, { code, noticed: 'dial', service: p.rt.id })
  return `connect ${code} ${b.ip}:${b.port}`
}

function onConnect (this: ConnectReq, status: number): void {
  const s = this[kSide]
  const p = s.pair
  if (s.closed || p.backend !== s) return // a dial given up on (timeout, endpoint removed)
  if (status < 0) {
    const b = p.endpoint
    dialFailed(p, `connect ${uvErrorName(status)}${b === null ? '' : ` ${b.ip}:${b.port}`}`)
    return
  }
  noteConnected(p)
  startReading(p.client)
  startReading(s)
  const pp = tcpMode(p.rt, p.fe.ctx)
  if (pp === 'none' || p.client.closed) return
  // PROXY protocol: the header goes before any client byte, with the first of them when they come this turn.
  p.header = tcpHeader(p.fe, pp, p.clientIP, p.clientPort, p.client.h)
  p.client.h.onread = onFirstRead
  held.hold(p)
}

const held = new HeldHeaders<UvPair>(flushHeader)
/** Write requests of closed sides whose writes all finished at once: reused, one object less per side. */
const spareReqs: WriteReq[] = []

/** The client's first read while the header is held: header and bytes in one write. */
function onFirstRead (this: Handle): Buffer | undefined {
  this.onread = onRead
  const c = this[kSide]
  const p = c.pair
  const head = p.header
  const n = uv.state[uv.READ_BYTES_OR_ERROR] as number
  if (head === null || n <= 0 || p.backend === null) { flushHeader(p); return onRead.call(this) }
  p.header = null
  c.bytesRead += n
  p.rt.bytesUp += n
  if (p.endpoint !== null) p.endpoint.bytesUp += n
  writeFirst(p.backend, Buffer.concat([head, (c.buf as Buffer).subarray(0, n)], head.length + n))
  return undefined
}

/** Sends a header still held (alone: the client sent nothing this turn, or its first read was EOF). */
function flushHeader (p: UvPair): void {
  const head = p.header
  if (head === null) return
  p.header = null
  if (!p.client.closed) p.client.h.onread = onRead
  const d = p.backend
  if (d !== null && !d.closed && !d.writeEnded) writeFirst(d, head)
}

/** The first write to the backend, with relay's rule: while it is in flight the client is not read. */
function writeFirst (dst: Side, buf: Buffer): void {
  const req = (spareReqs.pop() ?? uv.newWriteReq()) as WriteReq // writeFirst: a spare request, as relay takes
  req.handle = dst.h
  req.oncomplete = onWriteDone
  req[kSide] = dst
  if (dst.h.writeBuffer(req, buf) !== 0) { sideFailed(dst); return }
  if (uv.state[uv.LAST_WRITE_WAS_ASYNC] === 0) { dst.req = req; return }
  req.buffer = buf
  dst.writing = true
  const src = dst.peer
  if (!src.closed && !src.paused) { src.paused = true; src.h.readStop() }
}

function startReading (s: Side): void {
  if (s.buf !== null) return // the backend, read since its connect
  useBuffer(s)
  if (s.h.readStart() !== 0) sideFailed(s)
}

function useBuffer (s: Side): void {
  const b = takeReadBuffer(SMALL_READ)
  s.buf = b
  s.view = null
  s.h.useUserBuffer(b)
}

// The read callback: `this` is the handle, nread comes through the shared state array.
function onRead (this: Handle): Buffer | undefined {
  const n = uv.state[uv.READ_BYTES_OR_ERROR] as number
  const s = this[kSide]
  if (n > 0) {
    s.bytesRead += n
    const p = s.pair
    const b = p.endpoint
    if (s.isClient) {
      p.rt.bytesUp += n
      if (b !== null) b.bytesUp += n
    } else {
      p.rt.bytesDown += n
      if (b !== null) b.bytesDown += n
    }
    return relay(s, n)
  }
  if (n === 0) return undefined
  if (n === UV_EOF) endRead(s)
  else sideFailed(s)
  return undefined
}

/**
 * Writes what `src` read to its peer. Returns the buffer the next read goes to when it
 * changes size: LARGE after a read filled a SMALL one (a bulk stream), SMALL again after a
 * short read, so an idle connection holds 2 × SMALL.
 */
function relay (src: Side, n: number): Buffer | undefined {
  const dst = src.peer
  const buf = src.buf as Buffer
  if (dst.closed || dst.writeEnded) return undefined
  let req = dst.req
  if (req === null) {
    req = (spareReqs.pop() ?? uv.newWriteReq()) as WriteReq
    req.handle = dst.h
    req.oncomplete = onWriteDone
    req[kSide] = dst
    dst.req = req
  }
  const view = n === buf.length ? buf : src.view !== null && src.view.length === n ? src.view : (src.view = buf.subarray(0, n))
  const err = dst.h.writeBuffer(req, view)
  if (err !== 0) {
    sideFailed(dst)
    return undefined
  }
  if (uv.state[uv.LAST_WRITE_WAS_ASYNC] !== 0) {
    // The kernel has not taken it all: libuv finishes the write from `buf` later, so the
    // source reads nothing more (into buf or at all) until it is done. The request now
    // belongs to the write; the next write gets a new one.
    dst.req = null
    dst.writing = true
    src.paused = true
    src.h.readStop()
    return undefined
  }
  const size = buf.length
  if (n === size && size === SMALL_READ) return swapBuffer(src, buf, LARGE_READ)
  if (size === LARGE_READ && n < SMALL_READ / 2) return swapBuffer(src, buf, SMALL_READ)
  return undefined
}

function swapBuffer (s: Side, old: Buffer, size: number): Buffer {
  giveReadBuffer(old)
  const b = takeReadBuffer(size)
  s.buf = b
  s.view = null
  return b
}

function onWriteDone (this: WriteReq, status: number): void {
  const dst = this[kSide]
  dst.writing = false
  if (dst.closed) return
  if (status < 0) { sideFailed(dst); return }
  const src = dst.peer
  if (src.paused && !src.closed) {
    src.paused = false
    if (src.h.readStart() !== 0) sideFailed(src)
  }
}

/** `s` sent its FIN: pass it on to the peer, behind what is still being written to it. */
function endRead (s: Side): void {
  s.readEnded = true
  const dst = s.peer
  if (dst.closed || dst.shutting) { maybeDone(s.pair); return }
  if (dst.readEnded && !dst.writing) {
    // dst has sent its FIN and nothing is queued to it: closing it sends ours (no unread data
    // is left to turn the close into a reset), without a shutdown's extra poll and callback.
    closeSide(dst, false)
    dst.writeEnded = true
    maybeDone(s.pair)
    return
  }
  dst.shutting = true
  const req = uv.newShutdownReq() as ShutdownReq
  req.handle = dst.h
  req[kSide] = dst
  // Nothing queued to dst: its FIN goes out next loop turn (or with its close, if first): no callback needed.
  const quiet = !dst.writing
  if (!quiet) req.oncomplete = onShutdownDone
  const err = dst.h.shutdown(req)
  if (err === 0 && !quiet) return
  if (err === 0 || err === UV_ENOTCONN || err === SHUTDOWN_DONE_AT_ONCE) { dst.writeEnded = true; maybeDone(s.pair); return }
  sideFailed(dst)
}

function onShutdownDone (this: ShutdownReq, status: number): void {
  const dst = this[kSide]
  if (dst.closed) return
  if (status < 0 && status !== UV_ENOTCONN) { sideFailed(dst); return }
  dst.writeEnded = true
  maybeDone(dst.pair)
}

/** Both FINs have been passed on: the connection is over. */
function maybeDone (p: UvPair): void {
  const b = p.backend
  if (b === null || !p.client.writeEnded || !b.writeEnded) return
  closeSide(p.client, false) // a side closed above is left as it is
  closeSide(b, false)
  notePairFinished(p)
}

/** A read or write on `s` failed (a reset, a broken pipe): its peer is reset, both close. */
function sideFailed (s: Side): void {
  const p = s.pair
  if (s.closed) return
  if (p.reason === null) p.reason = s.isClient ? 'client-error' : 'backend-error'
  closeSide(s, false)
  const peer = p.backend === null ? null : s.peer
  if (peer !== null && !peer.closed) closeSide(peer, true)
  notePairFinished(p)
}

/** Ends a connection that cannot (or may no longer) be served: the client gets a reset, not a hang. */
function abort (p: UvPair, reason: CloseReason): void {
  if (p.reason === null) p.reason = reason
  if (p.timer !== null) { clearTimeout(p.timer); p.timer = null }
  if (p.backend !== null) closeSide(p.backend, false)
  closeSide(p.client, true)
  notePairFinished(p)
}

/**
 * Closes a side's handle; `reset` sends an RST instead of a FIN, so the peer sees the failure
 * rather than a clean end, but only while the socket is fully open (no FIN either way yet).
 */
function closeSide (s: Side, reset: boolean): void {
  if (s.closed) return
  s.closed = true
  const h = s.h
  if (!reset || s.readEnded || s.shutting || h.reset() !== 0) h.close()
  if (s.req !== null && spareReqs.length < 64) spareReqs.push(s.req) // never went async: the next pair's (few: each holds its old side)
  const b = s.buf
  if (b !== null) {
    s.buf = null
    // A write to the peer may still point into it (cancelled by the peer's close, or not
    // yet): such a buffer is left to the GC instead of going back to the pool.
    const peer = s.peer as Side | undefined
    if (peer === undefined || !peer.writing) giveReadBuffer(b)
  }
}
