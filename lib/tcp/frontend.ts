import { createServer, type Server, type Socket } from 'node:net'
import { type DataPlaneContext, type Frontend, type FrontendSpec, type FrontendState, listenServer } from '../frontend/contract.js'
import { acceptFailed, admit, isFdExhaustion } from '../frontend/limits.js'
import { type ServicePortRuntime, sourceAllowed } from '../frontend/runtime.js'
import { listenHandle } from '../internals/net-handles.js'
import type { UvTcpHandle } from '../internals/uv-tcp.js'
import { dialFailed } from './dial.js'
import type { PairBase, PairHost } from './pair.js'
import { acceptStream } from './stream-engine.js'
import { acceptFaulty } from './toxic-pair.js'
import { acceptHandle, enableUvEngine } from './uv-engine.js'

const kFrontend = Symbol('svcproxy.frontend')

interface FrontendServer extends Server { [kFrontend]: TcpFrontend }
interface ListenHandle { [kFrontend]: TcpFrontend, [kNetAccept]: (err: number, h?: UvTcpHandle) => void, onconnection: unknown }
const kNetAccept = Symbol('svcproxy.netAccept')

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
  private readonly server: FrontendServer

  constructor (spec: FrontendSpec, rt: ServicePortRuntime, ctx: DataPlaneContext) {
    this.spec = spec
    this.rt = rt
    this.ctx = ctx
    // pauseOnConnect: nothing is read from the client until a backend is there to take it.
    const server = createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true }) as FrontendServer
    server[kFrontend] = this
    server.on('connection', onStreamConnection)
    server.on('error', onServerError)
    this.server = server
  }

  async open (): Promise<void> {
    const r = await listenServer(this.server, this.spec.host, this.ctx.ephemeralPorts ? 0 : this.spec.port, 4096)
    if (r.error !== '') {
      this.state = 'error'
      this.error = r.error
      return
    }
    this.boundPort = r.port
    this.ctx.limits.tcpListeners++
    // The uv engine takes accepted handles straight from the listening handle.
    const lh = this.ctx.engine === 'uv' && enableUvEngine() ? listenHandle(this.server) : null
    if (lh !== null) {
      (lh as ListenHandle)[kFrontend] = this
      ;(lh as ListenHandle)[kNetAccept] = lh.onconnection as ListenHandle[typeof kNetAccept] // net's own: toxics take that path
      lh.onconnection = onHandleConnection
    }
    this.state = 'listening'
  }

  private serverClosed = false

  isClosed (): boolean {
    return this.serverClosed
  }

  close (hard: boolean): void {
    if (this.state === 'listening') this.ctx.limits.tcpListeners--
    if (this.state === 'listening' || this.state === 'binding') this.server.close(() => { this.serverClosed = true })
    else this.serverClosed = true
    this.state = 'closed'
    if (hard) for (const p of this.pairs) p.abort('shutdown')
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
  // Toxics on this port: net's accept makes a net.Socket and emits 'connection' (above).
  if (fe.rt.faults !== null) this[kNetAccept](err, h)
  else acceptHandle(fe, err, h)
}
