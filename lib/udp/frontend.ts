import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import type { DataPlaneContext, Frontend, FrontendSpec, FrontendState } from '../frontend/contract.js'
import { type ServicePortRuntime, sourceAllowed } from '../frontend/runtime.js'
import { uvErrorName } from '../internals/uv-tcp.js'
import { udpHandleOf, type UvUdpHandle } from '../internals/uv-udp.js'
import { type DropReason, endSession, forwardUp, openSession, type Session, type SessionHost } from './session.js'

/**
 * Kernel buffers asked for on the service socket, which every client of the port shares:
 * a burst of large datagrams must not overflow the ~208 KiB default. Linux caps the value at
 * net.core.rmem_max / wmem_max without failing.
 */
export const SERVICE_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024

/** At most one drop log line per frontend per interval; the line carries the count. */
export const DROP_LOG_INTERVAL_MS = 10_000

const kFrontend = Symbol('svcproxy.udpFrontend')

interface ServiceSocket extends Socket { [kFrontend]: UdpFrontend }
type ServiceHandle = UvUdpHandle & { [kFrontend]: UdpFrontend }

/**
 * Every address here is an IP literal (validated by the model), so resolving is the identity.
 * Node runs a send's address through `lookup`; the default (dns.lookup) costs a tick per reply.
 */
function literalLookup (host: string, _opts: unknown, cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  cb(null, host, host.includes(':') ? 6 : 4)
}

/**
 * A UDP service port on one address: one socket, and one session per client address
 * (see udp-session.ts and docs/udp.md). Idle sessions are expired by one coarse sweep timer
 * per frontend, running only while sessions exist, instead of a timer per session.
 */
export class UdpFrontend implements Frontend, SessionHost {
  readonly spec: FrontendSpec
  rt: ServicePortRuntime
  state: FrontendState = 'binding'
  error = ''
  boundPort = 0
  readonly ctx: DataPlaneContext
  readonly socket: ServiceSocket
  /** The socket's handle when the fast path is available (udp-handle.ts): datagrams in and replies out. */
  raw: UvUdpHandle | null = null
  rawQueued = false
  /** Sessions by client IP, then client port: a lookup per datagram builds no key string. */
  private readonly byClient = new Map<string, Map<number, Session>>()
  private count = 0
  private sweepTimer: NodeJS.Timeout | null = null
  private closing = false
  socketClosed = false
  private dropsSinceLog = 0
  private lastDropLog = 0

  constructor (spec: FrontendSpec, rt: ServicePortRuntime, ctx: DataPlaneContext) {
    this.spec = spec
    this.rt = rt
    this.ctx = ctx
    const sock = createSocket({ type: spec.host.includes(':') ? 'udp6' : 'udp4', lookup: literalLookup }) as ServiceSocket
    sock[kFrontend] = this
    sock.on('message', onClientMessage)
    sock.on('error', onServiceError)
    sock.on('close', onServiceClose)
    this.socket = sock
  }

  open (): Promise<void> {
    return new Promise((resolve) => {
      const sock = this.socket
      const onError = (err: NodeJS.ErrnoException): void => {
        this.state = 'error'
        this.error = `${err.code ?? 'error'}: ${err.message}`
        this.closeSocket()
        resolve()
      }
      sock.once('error', onError)
      const bound = (): void => {
        sock.off('error', onError)
        if (this.state !== 'binding') { resolve(); return } // closed while binding
        this.boundPort = sock.address().port
        try {
          sock.setRecvBufferSize(SERVICE_SOCKET_BUFFER_BYTES)
          sock.setSendBufferSize(SERVICE_SOCKET_BUFFER_BYTES)
        } catch (err) {
          this.ctx.logger.warn({ service: this.rt.id, err: (err as Error).message }, 'cannot enlarge UDP socket buffers; using the defaults')
        }
        const h = this.ctx.engine === 'uv' ? udpHandleOf(sock) : null
        if (h !== null) {
          (h as ServiceHandle)[kFrontend] = this
          h.onmessage = onRawClientMessage
          this.raw = h
        }
        this.state = 'listening'
        resolve()
      }
      try {
        sock.bind({ address: this.spec.host, port: this.ctx.ephemeralPorts ? 0 : this.spec.port, exclusive: true }, bound)
      } catch (err) {
        // Argument errors throw instead of emitting; open() must still resolve, never reject.
        sock.off('error', onError)
        onError(err as NodeJS.ErrnoException)
      }
    })
  }

  /**
   * Closes the socket and every session. UDP has nothing to drain, and a session cannot
   * outlive its service socket (replies leave from it); the port must also be free at once
   * for a changed service that rebinds it.
   */
  close (hard: boolean): void {
    const reason = hard ? 'shutdown' : 'removed'
    for (const m of this.byClient.values()) for (const s of m.values()) endSession(s, reason)
    this.state = 'closed'
    this.stopSweep()
    this.closeSocket()
  }

  isClosed (): boolean {
    return this.socketClosed
  }

  openCount (): number {
    return this.count
  }

  /** Sessions on a removed endpoint end now; their clients' next datagrams pick live ones. */
  endpointsRemoved (keys: Set<string>): void {
    for (const m of this.byClient.values()) {
      for (const s of m.values()) if (keys.has(s.backend.key)) endSession(s, 'removed')
    }
  }

  find (ip: string, port: number): Session | undefined {
    return this.byClient.get(ip)?.get(port)
  }

  sessionStarted (s: Session): void {
    let m = this.byClient.get(s.clientIP)
    if (m === undefined) this.byClient.set(s.clientIP, (m = new Map()))
    m.set(s.clientPort, s)
    this.count++
    if (this.sweepTimer === null) {
      const every = Math.min(1000, Math.max(10, Math.floor(this.ctx.udpTimeoutMs / 8)))
      this.sweepTimer = setInterval(sweep, every, this)
      this.sweepTimer.unref()
    }
  }

  sessionEnded (s: Session): void {
    const m = this.byClient.get(s.clientIP)
    if (m === undefined || m.get(s.clientPort) !== s) return
    m.delete(s.clientPort)
    if (m.size === 0) this.byClient.delete(s.clientIP)
    this.count--
    if (this.count === 0) this.stopSweep()
  }

  drop (why: DropReason, n: number): void {
    this.rt.udpDrops += n
    this.dropsSinceLog += n
    const now = Date.now()
    if (now - this.lastDropLog < DROP_LOG_INTERVAL_MS) return
    this.ctx.logger.warn({
      service: this.rt.id,
      address: `${this.spec.host}:${this.boundPort}`,
      reason: why,
      dropped: this.dropsSinceLog,
      sessions: this.rt.udpSessionsActive,
      maxSessions: this.ctx.udpMaxSessions,
    }, why === 'sessions-full' ? 'UDP session table full: datagrams from new clients dropped' : 'UDP datagrams dropped')
    this.lastDropLog = now
    this.dropsSinceLog = 0
  }

  /**
   * Expires sessions idle (no datagram either way) for --udp-timeout. A session active since
   * the last sweep counts as quiet from now; so one expires between the timeout and the
   * timeout plus two sweep intervals after its last datagram.
   */
  expireIdle (now: number): void {
    const limit = this.ctx.udpTimeoutMs
    for (const m of this.byClient.values()) {
      for (const s of m.values()) {
        if (s.active) { s.active = false; s.quietSince = now } else if (now - s.quietSince >= limit) endSession(s, 'idle-timeout')
      }
    }
  }

  private stopSweep (): void {
    if (this.sweepTimer !== null) {
      clearInterval(this.sweepTimer)
      this.sweepTimer = null
    }
  }

  private closeSocket (): void {
    if (this.closing) return
    this.closing = true
    try {
      this.socket.close()
    } catch {
      this.socketClosed = true // never opened or already closed
    }
  }
}

function sweep (fe: UdpFrontend): void {
  fe.expireIdle(Date.now())
}

function onClientMessage (this: ServiceSocket, msg: Buffer, rinfo: RemoteInfo): void {
  clientDatagram(this[kFrontend], msg, rinfo.address, rinfo.port)
}

// The fast path's receive callback (udp-handle.ts): what dgram would turn into 'message' or 'error'.
function onRawClientMessage (this: ServiceHandle, nread: number, _h: UvUdpHandle, msg: Buffer | undefined, rinfo: { address: string, port: number } | undefined): void {
  const fe = this[kFrontend]
  if (nread < 0 || msg === undefined || rinfo === undefined) {
    fe.ctx.logger.warn({ service: fe.rt.id, code: uvErrorName(nread) }, 'UDP socket error')
    return
  }
  clientDatagram(fe, msg, rinfo.address, rinfo.port)
}

function clientDatagram (fe: UdpFrontend, msg: Buffer, ip: string, port: number): void {
  if (fe.state !== 'listening') return
  let s = fe.find(ip, port)
  if (s === undefined) {
    if (fe.spec.kind === 'loadBalancer' && !sourceAllowed(fe.rt, ip)) {
      fe.drop('source-range', 1)
      return
    }
    if (fe.rt.udpSessionsActive >= fe.ctx.udpMaxSessions) {
      fe.drop('sessions-full', 1)
      return
    }
    const opened = openSession(fe, ip, port)
    if (opened === null) return
    s = opened
  }
  forwardUp(s, msg)
}

function onServiceError (this: ServiceSocket, err: NodeJS.ErrnoException): void {
  const fe = this[kFrontend]
  if (fe.state === 'binding') return // open() reports bind errors
  fe.ctx.logger.warn({ service: fe.rt.id, code: err.code, err: err.message }, 'UDP socket error')
}

function onServiceClose (this: ServiceSocket): void {
  this[kFrontend].socketClosed = true
}
