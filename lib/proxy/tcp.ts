import { connect, createServer, type Server, type Socket } from 'node:net'
import type { Backend } from '../table/backend.js'
import { type CloseReason, hostPort, observed } from './events.js'
import type { DataPlaneContext, Frontend, FrontendSpec, FrontendState } from './frontend.js'
import type { ServicePortRuntime } from './runtime.js'
import { acceptFailed, admit } from './limits.js' // hardening (#8)
import { adoptAccepted, type BufferedSocket, connectBuffered, reclaim, relay, releaseReadBuffer } from './read-buffers.js'

/**
 * kube-proxy's dial ladder: 4 attempts, each on the next endpoint, with growing timeouts.
 * Unlike kube-proxy the ladder runs per connection, off the accept path (kubernetes#12242).
 */
export const DIAL_TIMEOUTS_MS = [250, 500, 1000, 2000] as const

const kPair = Symbol('svcproxy.pair')
const kFrontend = Symbol('svcproxy.frontend')

// A socket of a pair; with pooled reads (the default) it is also a BufferedSocket.
interface PairSocket extends BufferedSocket { [kPair]: Pair }
interface FrontendServer extends Server { [kFrontend]: TcpFrontend }

/**
 * One proxied connection: client socket, backend socket, and what is needed to account for it.
 * Handlers are module-level functions that find the Pair through the socket, so a connection
 * allocates no closures.
 */
class Pair {
  readonly id: number
  readonly client: PairSocket
  backend: PairSocket | null = null
  readonly fe: TcpFrontend
  readonly rt: ServicePortRuntime
  readonly clientIP: string
  readonly start: number
  endpoint: Backend | null = null
  attempt = 0
  timer: NodeJS.Timeout | null = null
  reason: CloseReason | null = null
  connected = false
  /** Both sockets read into pooled buffers (read-buffers.ts). */
  pooled = false
  clientClosed = false
  backendClosed = true
  finished = false
  // hardening (#8): idle sweep state: byte count at the last sweep, sweeps since it moved.
  idleBytes = -1
  idleTicks = 0
  /** hardening (#8): endpoints this connection failed to dial; allocated on the first failure only. */
  tried: Backend[] | null = null

  constructor (id: number, client: PairSocket, fe: TcpFrontend) {
    this.id = id
    this.client = client
    this.fe = fe
    this.rt = fe.rt
    this.clientIP = client.remoteAddress ?? ''
    this.start = Date.now()
  }
}

export class TcpFrontend implements Frontend {
  readonly spec: FrontendSpec
  rt: ServicePortRuntime
  state: FrontendState = 'binding'
  error = ''
  boundPort = 0
  readonly ctx: DataPlaneContext
  readonly pairs = new Set<Pair>()
  private readonly server: FrontendServer

  constructor (spec: FrontendSpec, rt: ServicePortRuntime, ctx: DataPlaneContext) {
    this.spec = spec
    this.rt = rt
    this.ctx = ctx
    // pauseOnConnect: nothing is read from the client until a backend is there to take it.
    const server = createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true }) as FrontendServer
    server[kFrontend] = this
    server.on('connection', onConnection)
    server.on('error', onServerError)
    this.server = server
  }

  open (): Promise<void> {
    return new Promise((resolve) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        this.state = 'error'
        this.error = `${err.code ?? 'error'}: ${err.message}`
        resolve()
      }
      this.server.once('error', onError)
      this.server.listen({ host: this.spec.host, port: this.ctx.ephemeralPorts ? 0 : this.spec.port, backlog: 4096 }, () => {
        this.server.off('error', onError)
        const a = this.server.address()
        this.boundPort = typeof a === 'object' && a !== null ? a.port : this.spec.port
        this.state = 'listening'
        resolve()
      })
    })
  }

  private serverClosed = false

  isClosed (): boolean {
    return this.serverClosed
  }

  close (hard: boolean): void {
    if (this.state === 'listening' || this.state === 'binding') this.server.close(() => { this.serverClosed = true })
    else this.serverClosed = true
    this.state = 'closed'
    if (hard) for (const p of this.pairs) abort(p, 'shutdown')
  }

  openCount (): number {
    return this.pairs.size
  }

  // hardening (#8) begin: --tcp-idle-timeout, driven by the data plane's one sweep timer.
  /** Closes established pairs whose client byte counts have not moved for `ticks` sweeps. */
  sweepIdle (ticks: number): void {
    for (const p of this.pairs) {
      if (!p.connected) continue
      const c = p.client
      const n = c.bytesRead + c.bytesWritten
      if (n !== p.idleBytes) { p.idleBytes = n; p.idleTicks = 0; continue }
      if (++p.idleTicks < ticks) continue
      if (p.reason === null) p.reason = 'idle-timeout'
      c.destroy()
      p.backend?.destroy()
    }
  }
  // hardening (#8) end

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
}

function onServerError (this: FrontendServer, err: NodeJS.ErrnoException): void {
  const fe = this[kFrontend]
  if (err.code === 'EMFILE' || err.code === 'ENFILE') {
    acceptFailed(fe.ctx.limits, fe.ctx.logger, fe.rt.id, err.code) // hardening (#8): once per episode
    return
  }
  fe.ctx.logger.warn({ service: fe.rt.id, err: err.message }, 'listener error')
}

function ignore (): void {} // hardening (#8): a rejected socket's late errors

function onConnection (this: FrontendServer, sock: Socket): void {
  const fe = this[kFrontend]
  // hardening (#8): over --max-connections or the service's limit: reset at once, counted.
  if (!admit(fe.ctx.limits, fe.rt, fe.ctx.logger)) { sock.on('error', ignore); sock.resetAndDestroy(); return }
  const client = ((fe.ctx.pooledReads ? adoptAccepted(sock, onClientRead) : null) ?? sock) as PairSocket
  const pair = new Pair(fe.ctx.nextConnectionId(), client, fe)
  pair.pooled = fe.ctx.pooledReads && client !== sock
  client[kPair] = pair
  client.on('error', onClientError)
  client.on('close', onClientClose)
  fe.pairs.add(pair)
  const rt = fe.rt
  rt.accepted++
  rt.active++
  const ev = fe.ctx.events
  if (observed(ev, 'accept')) ev.emit('accept', baseEvent(pair))
  dial(pair)
}

function dial (p: Pair): void {
  const rt = p.rt
  const candidates = p.fe.spec.local ? rt.localEndpoints : undefined
  let b = rt.balancer.pick(p.clientIP, p.attempt > 0, candidates)
  // hardening (#8): concurrent connections share the round-robin cursor, so a retry could land
  // on the endpoint that just refused it again; skip endpoints already tried while others remain.
  const tried = p.tried
  if (tried !== null && b !== undefined) {
    const n = (candidates ?? rt.balancer.endpoints).length
    for (let i = 0; i < n && b !== undefined && tried.includes(b); i++) b = rt.balancer.pick(p.clientIP, true, candidates)
  }
  if (b === undefined) {
    if (p.attempt === 0) rt.noEndpoints++
    abort(p, p.attempt === 0 ? 'no-endpoints' : 'dial-failed')
    return
  }
  p.endpoint = b
  const s = (p.pooled ? connectBuffered(b.ip, b.port, onBackendRead) : connect({ host: b.ip, port: b.port, allowHalfOpen: true, noDelay: true })) as PairSocket
  s[kPair] = p
  p.backend = s
  p.backendClosed = false
  s.on('connect', onBackendConnect)
  s.on('error', onBackendError)
  s.on('close', onBackendClose)
  p.timer = setTimeout(onDialTimeout, DIAL_TIMEOUTS_MS[p.attempt] ?? 2000, p)
}

function onDialTimeout (p: Pair): void {
  p.timer = null
  if (!p.connected) dialFailed(p, 'dial timeout')
}

function dialFailed (p: Pair, error: string): void {
  if (p.timer !== null) { clearTimeout(p.timer); p.timer = null }
  const s = p.backend
  if (s !== null) {
    // Detach first: the failed socket's own close must not end the pair.
    s.removeListener('close', onBackendClose)
    s.removeListener('connect', onBackendConnect)
    s.destroy()
    p.backend = null
    p.backendClosed = true
  }
  const b = p.endpoint
  const rt = p.rt
  rt.dialFailures++
  if (b !== null) { b.dialFailures++; (p.tried ??= []).push(b) } // hardening (#8): tried
  const ev = p.fe.ctx.events
  if (observed(ev, 'dialFailed')) ev.emit('dialFailed', { ...baseEvent(p), endpoint: b?.key ?? '', attempt: p.attempt, error })
  p.endpoint = null
  if (p.clientClosed) { finish(p); return }
  rt.balancer.unpin(p.clientIP)
  p.attempt++
  if (p.attempt >= DIAL_TIMEOUTS_MS.length) {
    abort(p, 'dial-failed')
    return
  }
  rt.dialRetries++
  dial(p)
}

function onBackendConnect (this: PairSocket): void {
  const p = this[kPair]
  if (p.timer !== null) { clearTimeout(p.timer); p.timer = null }
  if (p.clientClosed) { this.destroy(); return }
  p.connected = true
  const b = p.endpoint as Backend
  b.accepted++
  b.active++
  const ev = p.fe.ctx.events
  if (observed(ev, 'endpoint')) ev.emit('endpoint', { ...baseEvent(p), endpoint: b.key, attempt: p.attempt })
  const c = p.client
  if (!p.pooled) {
    c.on('data', onClientData)
    this.on('data', onBackendData)
  }
  c.on('end', onClientEnd)
  c.on('drain', onClientDrain)
  this.on('end', onBackendEnd)
  this.on('drain', onBackendDrain)
  c.resume()
}

// Data path. Backpressure: when a write is refused, pause the source until the sink drains,
// so a slow reader on either side holds at most one socket buffer, never an unbounded queue.
function onClientData (this: PairSocket, chunk: Buffer): void {
  const p = this[kPair]
  const n = chunk.length
  p.rt.bytesUp += n
  const b = p.endpoint
  if (b !== null) b.bytesUp += n
  const dst = p.backend
  if (dst !== null && !dst.write(chunk)) this.pause()
}

function onBackendData (this: PairSocket, chunk: Buffer): void {
  const p = this[kPair]
  const n = chunk.length
  p.rt.bytesDown += n
  const b = p.endpoint
  if (b !== null) b.bytesDown += n
  if (!p.client.write(chunk)) this.pause()
}

// Pooled reads: the same, through net's `onread` (see read-buffers.ts); returning false stops
// reading until the other side drains.
function onClientRead (this: BufferedSocket, n: number, buf: Buffer): boolean {
  const p = (this as PairSocket)[kPair]
  p.rt.bytesUp += n
  const b = p.endpoint
  if (b !== null) b.bytesUp += n
  const dst = p.backend
  if (dst === null) return false
  return relay(this, dst, n, buf)
}

function onBackendRead (this: BufferedSocket, n: number, buf: Buffer): boolean {
  const p = (this as PairSocket)[kPair]
  p.rt.bytesDown += n
  const b = p.endpoint
  if (b !== null) b.bytesDown += n
  return relay(this, p.client, n, buf)
}

function onClientDrain (this: PairSocket): void {
  const b = this[kPair].backend
  if (b === null) return
  reclaim(b)
  b.resume()
}

function onBackendDrain (this: PairSocket): void {
  const c = this[kPair].client
  reclaim(c)
  c.resume()
}

// Half-close: a FIN from one side becomes a FIN to the other once its queued data is written.
function onClientEnd (this: PairSocket): void {
  this[kPair].backend?.end()
}

function onBackendEnd (this: PairSocket): void {
  this[kPair].client.end()
}

function onClientError (this: PairSocket): void {
  const p = this[kPair]
  if (p.reason === null) p.reason = 'client-error'
  const b = p.backend
  if (b !== null && !b.destroyed) reset(b)
}

function onBackendError (this: PairSocket, err: NodeJS.ErrnoException): void {
  const p = this[kPair]
  if (!p.connected) {
    // hardening (#8): no descriptor for the backend socket: the same episode as a failed accept.
    if (err.code === 'EMFILE' || err.code === 'ENFILE') acceptFailed(p.fe.ctx.limits, p.fe.ctx.logger, p.rt.id, err.code)
    dialFailed(p, err.message)
    return
  }
  if (p.reason === null) p.reason = 'backend-error'
  if (!p.client.destroyed) reset(p.client)
}

function onClientClose (this: PairSocket, hadError: boolean): void {
  const p = this[kPair]
  p.clientClosed = true
  releaseReadBuffer(this)
  const b = p.backend
  if (b !== null && !b.destroyed && (hadError || !p.connected)) {
    if (p.reason === null) p.reason = 'client-error'
    b.destroy()
  }
  if (p.timer !== null && !p.connected) {
    clearTimeout(p.timer)
    p.timer = null
  }
  if (p.backendClosed) finish(p)
}

function onBackendClose (this: PairSocket, hadError: boolean): void {
  const p = this[kPair]
  p.backendClosed = true
  releaseReadBuffer(this)
  if (hadError && !p.client.destroyed) {
    if (p.reason === null) p.reason = 'backend-error'
    reset(p.client)
  }
  if (p.clientClosed) finish(p)
}

/** Ends a connection that cannot (or may no longer) be served: the client gets a reset, not a hang. */
function abort (p: Pair, reason: CloseReason): void {
  if (p.reason === null) p.reason = reason
  if (p.timer !== null) { clearTimeout(p.timer); p.timer = null }
  const b = p.backend
  if (b !== null && !b.destroyed) b.destroy()
  if (!p.client.destroyed) reset(p.client)
  else if (p.backendClosed || b === null) finish(p)
}

/**
 * Sends an RST instead of a FIN, so the peer sees the failure (a refused or broken service)
 * rather than a clean end. Only on a socket that is still fully open: resetting one that has
 * already seen the peer's FIN can leave the handle stuck at process exit (observed on Node 20).
 */
function reset (s: Socket): void {
  if (s.readyState === 'open' && !s.readableEnded) s.resetAndDestroy()
  else s.destroy()
}

function finish (p: Pair): void {
  if (p.finished) return
  p.finished = true
  p.fe.ctx.limits.active-- // hardening (#8): admitted in onConnection
  const rt = p.rt
  rt.active--
  const b = p.endpoint
  if (b !== null && p.connected) b.active--
  p.fe.pairs.delete(p)
  const ev = p.fe.ctx.events
  if (observed(ev, 'close')) {
    ev.emit('close', {
      ...baseEvent(p),
      endpoint: p.connected && b !== null ? b.key : null,
      bytesIn: p.client.bytesRead,
      bytesOut: p.client.bytesWritten,
      durationMs: Date.now() - p.start,
      reason: p.reason ?? 'eof',
    })
  }
}

function baseEvent (p: Pair): { id: number, service: string, port: string, protocol: 'TCP', client: string, frontend: string } {
  return {
    id: p.id,
    service: `${p.rt.namespace}/${p.rt.service}`,
    port: p.rt.portLabel,
    protocol: 'TCP',
    client: hostPort(p.client.remoteAddress, p.client.remotePort),
    // The listener, not the socket: a closed socket no longer knows its local address.
    frontend: hostPort(p.fe.spec.host, p.fe.boundPort),
  }
}
