import { createSocket, type Socket } from 'node:dgram'
import type { Backend } from '../balancer/backend.js'
import { type CloseReason, observed } from '../frontend/events.js'
import type { DataPlaneContext, FrontendSpec } from '../frontend/contract.js'
import type { DropReason } from '../frontend/reasons.js'
import { sendWithHeader, udpHeader, udpMode } from '../frontend/proxy-protocol.js'
import type { ServicePortRuntime } from '../frontend/runtime.js'
import { sendConnected, sendTo, udpHandleOf, type UvUdpHandle } from '../internals/uv-udp.js'
import { uvErrorName } from '../internals/uv-tcp.js'
import { DIAL_TIMEOUTS_MS } from '../tcp/dial.js'
import { baseEvent, emitSessionClose, emitSessionOpen } from './session-events.js'
import { datagramToxics, type SessionToxics } from './toxics.js'

/**
 * Datagrams held per session while its upstream socket is still connecting (one tick or so).
 * Both bounds apply; the byte bound leaves room for one maximal datagram (65,507 bytes) plus
 * a few small ones, so a first datagram of any legal size is never refused.
 */
export const PENDING_MAX_DATAGRAMS = 8
export const PENDING_MAX_BYTES = 128 * 1024

/**
 * Replies waiting in the service socket's send queue. libuv queues a send the kernel refused
 * with EAGAIN; past this many bytes a reply is dropped (and counted) instead of queued, so a
 * stuck socket cannot grow memory without bound.
 */
export const SEND_QUEUE_MAX_BYTES = 4 * 1024 * 1024

export type { DropReason }

const kSession = Symbol('svcproxy.udpSession')

interface SessionSocket extends Socket { [kSession]: Session }
type SessionHandle = UvUdpHandle & { [kSession]: Session }

/** What a session needs from the frontend that owns it (implemented by UdpFrontend). */
export interface SessionHost {
  readonly spec: FrontendSpec
  readonly ctx: DataPlaneContext
  readonly rt: ServicePortRuntime
  readonly boundPort: number
  /** The service socket: replies leave from it, so the client sees VIP:port as their source. */
  readonly socket: Socket
  /** The service socket's handle when the fast path is available (udp-handle.ts). */
  readonly raw: UvUdpHandle | null
  /** A reply on `raw` was queued (not sent at once) and the queue has not been seen empty since. */
  rawQueued: boolean
  sessionStarted (s: Session): void
  sessionEnded (s: Session): void
  /** Counts dropped datagrams (and logs, rate-limited). */
  drop (why: DropReason, n: number): void
}

/**
 * ICMP errors that say the endpoint takes no datagrams (nothing bound on the port, host or
 * network unreachable): a dial failure, as a refused TCP connect is, and the session moves on.
 */
const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN'])

/**
 * One client address (ip:port) and the connected socket that carries its datagrams to the
 * endpoint picked for it. Socket handlers are module-level functions that find the session
 * through the socket, so a session allocates no closures.
 */
export class Session {
  readonly id: number
  readonly host: SessionHost
  readonly rt: ServicePortRuntime
  readonly clientIP: string
  readonly clientPort: number
  /** The endpoint now; a refusing one is replaced by the next (dialFailed). */
  backend: Backend
  sock: SessionSocket
  /** The connected socket's handle once connected, when the fast path is available. */
  raw: UvUdpHandle | null = null
  /** Dial attempts that failed so far (kube-proxy's ladder: at most DIAL_TIMEOUTS_MS.length endpoints per session). */
  attempt = 0
  /** Endpoints that failed for this session, not picked again; null until one does. */
  tried: Backend[] | null = null
  readonly start: number
  /**
   * A datagram went either way since the frontend's last idle sweep (a flag, not a clock read
   * per datagram); the sweep turns it into `quietSince`, and expires sessions quiet too long.
   */
  active = true
  quietSince: number
  connected = false
  closed = false
  readonly pending: Buffer[] = []
  pendingBytes = 0
  bytesIn = 0
  bytesOut = 0
  datagramsIn = 0
  datagramsOut = 0
  /** The faults this session got (udp/toxics.ts); null while none applies. */
  tx: SessionToxics | null = null
  /** The PROXY protocol v2 header before each datagram to the endpoint (frontend/proxy-protocol.ts); null: none. */
  readonly pp: Buffer | null

  constructor (id: number, host: SessionHost, clientIP: string, clientPort: number, backend: Backend) {
    this.id = id
    this.host = host
    this.rt = host.rt
    this.clientIP = clientIP
    this.clientPort = clientPort
    this.backend = backend
    this.sock = upstreamSocket(this, backend)
    this.start = Date.now()
    this.quietSince = this.start
    this.pp = udpMode(host.rt, host.ctx) === 'v2' ? udpHeader(host, clientIP, clientPort) : null
  }
}

function upstreamSocket (s: Session, b: Backend): SessionSocket {
  const sock = createSocket({ type: b.ip.includes(':') ? 'udp6' : 'udp4' }) as SessionSocket
  sock[kSession] = s
  sock.on('connect', onConnect)
  sock.on('message', onBackendMessage)
  sock.on('error', onBackendError)
  return sock
}

/** Connects the session's socket to its endpoint; false when that failed at once (counted and handled). */
function connectUpstream (s: Session): boolean {
  try {
    // A connected socket: the kernel delivers only the endpoint's datagrams to it, and an
    // ICMP port-unreachable from the endpoint surfaces as ECONNREFUSED (onBackendError).
    s.sock.connect(s.backend.port, s.backend.ip)
    return true
  } catch (err) {
    dialFailed(s, (err as Error).message)
    return false
  }
}

/**
 * Starts a session for a new client address: picks an endpoint with the service port's
 * balancer (affinity included) and connects a socket to it. Returns null when there is no
 * endpoint (the datagram is dropped and counted, as kube-proxy dropped it).
 */
export function openSession (host: SessionHost, clientIP: string, clientPort: number): Session | null {
  const rt = host.rt
  const b = rt.balancer.pick(clientIP, false, host.spec.local ? rt.localEndpoints : undefined)
  if (b === undefined) {
    rt.noEndpoints++
    host.drop('no-endpoints', 1)
    return null
  }
  const s = new Session(host.ctx.nextConnectionId(), host, clientIP, clientPort, b)
  rt.accepted++
  rt.udpSessionsActive++
  b.accepted++
  b.active++
  host.sessionStarted(s)
  const ev = host.ctx.events
  if (observed(ev, 'accept')) ev.emit('accept', baseEvent(s))
  emitSessionOpen(s)
  connectUpstream(s)
  return s.closed ? null : s
}

/** A datagram from the session's client. */
export function forwardUp (s: Session, msg: Buffer): void {
  s.active = true
  if (s.rt.faults !== null) faults.up(s, msg)
  else passUp(s, msg)
}

function passUp (s: Session, msg: Buffer): void {
  if (s.connected) {
    sendUp(s, msg)
    return
  }
  if (s.pending.length >= PENDING_MAX_DATAGRAMS || s.pendingBytes + msg.length > PENDING_MAX_BYTES) {
    s.host.drop('queue-full', 1)
    return
  }
  s.pending.push(msg)
  s.pendingBytes += msg.length
}

function sendUp (s: Session, msg: Buffer): void {
  const n = msg.length
  const rt = s.rt
  rt.udpDatagramsUp++
  rt.bytesUp += n
  const b = s.backend
  b.udpDatagramsUp++
  b.bytesUp += n
  s.bytesIn += n
  s.datagramsIn++
  // No callback: a send error (the rare refusal the kernel reports on send rather than on
  // receive) is dropped like a lost datagram; a refusing endpoint keeps refusing, and the
  // next ICMP error reaches onBackendError.
  if (s.pp !== null) sendWithHeader(s.raw, s.sock, s.pp, msg)
  else if (s.raw !== null) sendConnected(s.raw, msg)
  else s.sock.send(msg)
}

function onConnect (this: SessionSocket): void {
  const s = this[kSession]
  if (s.closed) return
  s.connected = true
  const h = s.host.ctx.engine === 'uv' ? udpHandleOf(this) : null
  if (h !== null) {
    (h as SessionHandle)[kSession] = s
    h.onmessage = onRawBackendMessage
    s.raw = h
  }
  const ev = s.host.ctx.events
  if (observed(ev, 'endpoint')) ev.emit('endpoint', { ...baseEvent(s), endpoint: s.backend.key, attempt: s.attempt })
  const q = s.pending
  for (let i = 0; i < q.length; i++) sendUp(s, q[i] as Buffer)
  q.length = 0
  s.pendingBytes = 0
}

function onBackendMessage (this: SessionSocket, msg: Buffer): void {
  reply(this[kSession], msg)
}

// The fast path's receive callback: a reply, or the error dgram would have emitted.
function onRawBackendMessage (this: SessionHandle, nread: number, _h: UvUdpHandle, msg: Buffer | undefined): void {
  const s = this[kSession]
  if (nread >= 0 && msg !== undefined) { reply(s, msg); return }
  const code = uvErrorName(nread)
  backendError(s, code, `recvmsg ${code}`)
}

// A reply: sent from the service socket to the client address, so its source is VIP:port.
function reply (s: Session, msg: Buffer): void {
  if (s.closed) return
  s.active = true
  if (s.rt.faults !== null) faults.down(s, msg)
  else passDown(s, msg)
}

function passDown (s: Session, msg: Buffer): void {
  const host = s.host
  const raw = host.raw
  // On the fast path the queue is looked at only while something may be in it: a send the
  // kernel takes at once leaves nothing queued.
  let queued = 0
  if (raw === null) queued = host.socket.getSendQueueSize()
  else if (host.rawQueued) {
    queued = raw.getSendQueueSize()
    if (queued === 0) host.rawQueued = false
  }
  if (queued > SEND_QUEUE_MAX_BYTES) {
    host.drop('send-queue-full', 1)
    return
  }
  const n = msg.length
  const rt = s.rt
  rt.udpDatagramsDown++
  rt.bytesDown += n
  const b = s.backend
  b.udpDatagramsDown++
  b.bytesDown += n
  b.consecutiveFailures = 0 // a reply: the endpoint answers (outlier detection)
  s.bytesOut += n
  s.datagramsOut++
  if (raw !== null) { if (sendTo(raw, msg, s.clientPort, s.clientIP)) host.rawQueued = true }
  else host.socket.send(msg, s.clientPort, s.clientIP)
}

/**
 * ECONNREFUSED (the endpoint's ICMP port-unreachable) and the other unreachable errors are a
 * failed dial: the session moves to another endpoint (dialFailed). Any other socket error ends
 * the session, and the client's affinity pin with it: its next datagram opens a new session on
 * whatever endpoint the balancer picks then.
 */
function onBackendError (this: SessionSocket, err: NodeJS.ErrnoException): void {
  backendError(this[kSession], err.code, err.message)
}

function backendError (s: Session, code: string | undefined, message: string): void {
  if (s.closed) return
  if (!s.connected) {
    dialFailed(s, message)
    return
  }
  if (code !== undefined && UNREACHABLE.has(code)) {
    // The datagram that drew the ICMP error is lost. The kernel reports one error per socket,
    // not per datagram, so this counts refusals reported, at least one datagram each.
    s.host.drop('endpoint-refused', 1)
    dialFailed(s, `${code}: ${message}`)
    return
  }
  s.rt.balancer.unpin(s.clientIP)
  s.host.ctx.logger.debug({ service: s.rt.id, endpoint: s.backend.key, code }, 'UDP session ended: endpoint error')
  endSession(s, 'backend-error')
}

/**
 * A dial failed: the upstream socket could not be set up (EMFILE and the like), or the endpoint
 * refused. Counted as a TCP dial failure is; then, in the dial ladder's spirit, the session's
 * pending and next datagrams go to another endpoint, one it has not tried, for up to as many
 * endpoints as the ladder has rungs. None left: the session ends (`dial-failed`).
 */
function dialFailed (s: Session, error: string): void {
  const b = s.backend
  const rt = s.rt
  rt.dialFailures++
  b.dialFailures++
  rt.balancer.unpin(s.clientIP)
  const ev = s.host.ctx.events
  if (observed(ev, 'dialFailed')) ev.emit('dialFailed', { ...baseEvent(s), endpoint: b.key, attempt: s.attempt, error })
  if (++b.consecutiveFailures >= rt.ejectAfter && rt.health !== null) rt.health.failedInARow(b, error) // outlier detection
  ;(s.tried ??= []).push(b)
  s.attempt++
  const next = s.attempt < DIAL_TIMEOUTS_MS.length ? untried(s) : undefined
  if (next === undefined) {
    endSession(s, 'dial-failed')
    return
  }
  rt.dialRetries++
  // The old socket goes (its handlers never run again); the session, its client and its
  // pending datagrams stay, and wait for the new socket to connect.
  b.active--
  closeUpstream(s)
  s.backend = next
  next.accepted++
  next.active++
  s.connected = false
  s.raw = null
  s.sock = upstreamSocket(s, next)
  connectUpstream(s)
}

/** The balancer's next endpoint for the session that it has not tried yet (the pick replaces an affinity pin). */
function untried (s: Session): Backend | undefined {
  const rt = s.rt
  const candidates = s.host.spec.local ? rt.localEndpoints : undefined
  const n = (candidates ?? rt.balancer.endpoints).length
  for (let i = 0; i < n; i++) {
    const b = rt.balancer.pick(s.clientIP, true, candidates, s.tried)
    if (b === undefined) return undefined
    if (s.tried === null || !s.tried.includes(b)) return b
  }
  return undefined
}

function closeUpstream (s: Session): void {
  try {
    s.sock.close()
  } catch {
    // Already closed: nothing left to release.
  }
}

/** Ends a session: closes its upstream socket, drops what it still held, reports it. */
export function endSession (s: Session, reason: CloseReason): void {
  if (s.closed) return
  s.closed = true
  s.rt.udpSessionsActive--
  s.backend.active--
  if (s.pending.length > 0) {
    s.host.drop('session-ended', s.pending.length)
    s.pending.length = 0
    s.pendingBytes = 0
  }
  if (s.tx !== null) faults.end(s)
  closeUpstream(s)
  s.host.sessionEnded(s)
  emitSessionClose(s, reason)
}

/** A `down` toxic in 'refuse' mode: handled as the endpoint's ICMP unreachable would be. */
function refusedByFault (s: Session): void {
  s.host.drop('endpoint-refused', 1)
  dialFailed(s, 'ECONNREFUSED: endpoint down (fault)')
}

/** The fault hooks (udp/toxics.ts), called only while the runtime has faults. */
const faults = datagramToxics<Session>(passUp, passDown, refusedByFault)
