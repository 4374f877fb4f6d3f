import { createServer, type Server, Socket } from 'node:net'
import { type DataPlaneContext, type Frontend, type FrontendSpec, type FrontendState, listenServer } from '../frontend/contract.js'
import { acceptFailed, admit, isFdExhaustion } from '../frontend/limits.js'
import { type ServicePortRuntime, sourceAllowed } from '../frontend/runtime.js'
import { listenTcp, type UvTcpHandle, type UvTcpServerHandle, uvTcp } from '../internals/uv-tcp.js'
import { dialFailed } from './dial.js'
import type { PairBase, PairHost } from './pair.js'
import { acceptStream } from './stream-engine.js'
import { acceptFaulty } from './toxic-pair.js'
import { acceptHandle, enableUvEngine } from './uv-engine.js'

const kFrontend = Symbol('svcproxy.frontend')

interface FrontendServer extends Server { [kFrontend]: TcpFrontend }
type ListenHandle = UvTcpServerHandle & { [kFrontend]: TcpFrontend }

/** The listen queue asked for (capped by net.core.somaxconn). */
const BACKLOG = 4096

/**
 * A TCP service port on one address: a listener whose accepted connections are each proxied
 * to an endpoint (a "pair"). The pairs' data path is the engine's (uv: uv-engine.ts, node:
 * stream-engine.ts); the listener, admission, idle sweep and endpoint removal are here.
 */
export class TcpFrontend implements Frontend, PairHost {
  readonly spec: FrontendSpec
  rt: ServicePortRuntime
  state: FrontendState = 'binding'
  error = ''
  boundPort = 0
  readonly ctx: DataPlaneContext
  readonly pairs = new Set<PairBase>()
  /** The node engine's listener; null in the uv engine, which listens on a libuv handle (`handle`). */
  private server: FrontendServer | null = null
  private handle: ListenHandle | null = null
  /** Accepted sockets come with TCP_NODELAY already on (set on the listening socket: listenTcp). */
  noDelayInherited = false

  constructor (spec: FrontendSpec, rt: ServicePortRuntime, ctx: DataPlaneContext) {
    this.spec = spec
    this.rt = rt
    this.ctx = ctx
  }

  async open (): Promise<void> {
    if (this.state !== 'binding') return // closed before it was opened
    this.opening = true
    const port = this.ctx.ephemeralPorts ? 0 : this.spec.port
    let r: { port: number, error: string }
    if (this.ctx.engine === 'uv' && enableUvEngine()) {
      // The uv engine takes accepted handles straight from a listening handle of its own.
      const l = listenTcp(uvTcp() as NonNullable<ReturnType<typeof uvTcp>>, this.spec.host, port, BACKLOG)
      if (l.handle !== null) {
        const h = l.handle as ListenHandle
        h[kFrontend] = this
        h.onconnection = onHandleConnection
        this.handle = h
        this.noDelayInherited = l.noDelay
      }
      r = l
    } else {
      // pauseOnConnect: nothing is read from the client until a backend is there to take it.
      const server = createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true }) as FrontendServer
      server[kFrontend] = this
      server.on('connection', onStreamConnection)
      server.on('error', onServerError)
      this.server = server
      r = await listenServer(server, this.spec.host, port, BACKLOG)
    }
    if (this.state !== 'binding') { this.closeListener(); return } // closed while binding: close() left the listener to this
    if (r.error !== '') {
      this.state = 'error'
      this.error = r.error
      return
    }
    this.boundPort = r.port
    this.ctx.limits.tcpListeners++
    this.state = 'listening'
  }

  private serverClosed = false
  private opening = false

  isClosed (): boolean {
    return this.serverClosed
  }

  close (hard: boolean): void {
    const was = this.state
    if (was === 'listening') this.ctx.limits.tcpListeners--
    this.state = 'closed'
    if (was !== 'binding' || !this.opening) this.closeListener() // a bind in progress closes what it opened (open())
    if (hard) for (const p of this.pairs) p.abort('shutdown')
  }

  private closeListener (): void {
    const h = this.handle
    const server = this.server
    this.handle = null
    this.server = null
    if (h !== null) h.close(() => { this.serverClosed = true })
    else if (server !== null && server.listening) server.close(() => { this.serverClosed = true })
    else this.serverClosed = true
  }

  openCount (): number {
    return this.pairs.size
  }

  /**
   * --tcp-idle-timeout, driven by the data plane's one sweep timer: closes established pairs
   * whose client byte counts have not moved for `ticks` sweeps.
   */
  sweepIdle (ticks: number): void {
    for (const p of this.pairs) {
      if (!p.connected) continue
      const n = p.bytesIn() + p.bytesOut()
      if (n !== p.idleBytes) { p.idleBytes = n; p.idleTicks = 0; continue }
      if (++p.idleTicks < ticks) continue
      p.closeIdle()
    }
  }

  endpointsRemoved (keys: Set<string>): void {
    // Established TCP connections to a removed endpoint are left to finish, as kube-proxy did:
    // the backend may still be draining; only new connections avoid it.
    for (const p of this.pairs) {
      if (!p.connected && p.endpoint !== null && keys.has(p.endpoint.key)) {
        // A dial in progress to a vanished endpoint: move on to a live one.
        dialFailed(p, 'endpoint removed')
      }
    }
  }


  /** loadBalancerSourceRanges apply here: a load-balancer address of a service that has them. */
  get checksSource (): boolean {
    return this.spec.kind === 'loadBalancer' && this.rt.sourceRanges !== null
  }

  /** True if a limit leaves room for one more connection (it is then counted as active). */
  admit (): boolean {
    return admit(this.ctx.limits, this.rt)
  }

  acceptError (code: string): void {
    const address = `${this.spec.host}:${this.boundPort}`
    if (isFdExhaustion(code)) {
      acceptFailed(this.ctx.limits, this.ctx.logger, { code, noticed: 'accept', service: this.rt.id, address }) // once per episode
      return
    }
    this.ctx.limits.acceptErrors++
    this.ctx.logger.warn({ service: this.rt.id, address, code }, 'accept failed')
  }
}

function onServerError (this: FrontendServer, err: NodeJS.ErrnoException): void {
  const fe = this[kFrontend]
  if (err.syscall === 'accept') {
    fe.acceptError(err.code ?? '')
    return
  }
  fe.ctx.logger.warn({ service: fe.rt.id, err: err.message }, 'listener error')
}

function onStreamConnection (this: FrontendServer, sock: Socket): void {
  const fe = this[kFrontend]
  const admitted = (!fe.checksSource || sourceAllowed(fe.rt, sock.remoteAddress ?? '')) && fe.admit()
  if (fe.rt.faults !== null) acceptFaulty(fe, sock, admitted) // toxics on this port (toxic-pair.ts)
  else acceptStream(fe, sock, admitted)
}

function onHandleConnection (this: ListenHandle, err: number, h?: UvTcpHandle): void {
  const fe = this[kFrontend]
  if (fe.rt.faults === null || err !== 0 || h === undefined) { acceptHandle(fe, err, h, fe.noDelayInherited); return }
  // Toxics on this port: their pairs run on net.Sockets (toxic-pair.ts), made as net.Server makes them.
  const sock = new Socket({ handle: h, allowHalfOpen: true, pauseOnCreate: true, readable: true, writable: true } as ConstructorParameters<typeof Socket>[0])
  acceptFaulty(fe, sock, (!fe.checksSource || sourceAllowed(fe.rt, sock.remoteAddress ?? '')) && fe.admit())
}
