import { connect, type Socket } from 'node:net'
import type { Backend } from '../balancer/backend.js'
import type { CloseReason } from '../frontend/events.js'
import { HeldHeaders, tcpHeader, tcpMode } from '../frontend/proxy-protocol.js'
import { dial } from './dial.js'
import { backendSocketFailed, reset } from './socket-ends.js'
import { noteAccepted, noteConnected, notePairFinished, PairBase, type PairHost } from './pair.js'
import { adoptAccepted, type BufferedSocket, connectBuffered, reclaim, relay, releaseReadBuffer } from './stream-reads.js'

/**
 * TCP in the `node` engine: the data path on net.Socket streams. The fallback when Node's libuv
 * handles are not reachable (uv.ts), and `engine: 'node'`. With `pooledReads` (the default)
 * both sockets read into pooled buffers (stream-reads.ts); otherwise through 'data' events.
 */

const kPair = Symbol('svcproxy.pair')

// A socket of a pair; with pooled reads it is also a BufferedSocket.
interface PairSocket extends BufferedSocket { [kPair]: StreamPair }

/** Handlers are module-level functions that find the pair through the socket: no closures per connection. */
class StreamPair extends PairBase {
  readonly client: PairSocket
  backend: PairSocket | null = null
  /** Both sockets read into pooled buffers (stream-reads.ts). */
  pooled = false
  clientClosed = false
  backendClosed = true

  constructor (id: number, client: PairSocket, fe: PairHost) {
    super(id, fe)
    this.client = client
  }

  protected peer (): { address: string, port: number } {
    return { address: this.client.remoteAddress ?? '', port: this.client.remotePort ?? 0 }
  }

  bytesIn (): number { return this.client.bytesRead }
  bytesOut (): number { return this.client.bytesWritten }
  queued (): number { return this.client.writableLength + (this.backend?.writableLength ?? 0) }
  abort (reason: CloseReason): void { abort(this, reason) }
  connect (b: Backend): string { connectBackend(this, b); return '' } // failures arrive as 'error'
  clientGone (): boolean { return this.clientClosed }

  cancelDial (): void {
    const s = this.backend
    if (s === null) return
    // Detach first: the failed socket's own close must not end the pair.
    s.removeListener('close', onBackendClose)
    s.removeListener('connect', onBackendConnect)
    s.destroy()
    this.backend = null
    this.backendClosed = true
  }

  closeIdle (): void {
    if (this.reason === null) this.reason = 'idle-timeout'
    this.client.destroy()
    this.backend?.destroy()
  }
}

function ignore (): void {} // a rejected socket's late errors

/** A connection accepted by the frontend's net.Server ('connection'). */
export function acceptStream (fe: PairHost, sock: Socket, admitted: boolean): void {
  // Outside loadBalancerSourceRanges, or over --max-connections or the service's limit: reset at once, counted.
  if (!admitted) { sock.on('error', ignore); sock.resetAndDestroy(); return }
  const client = ((fe.ctx.pooledReads ? adoptAccepted(sock, onClientRead) : null) ?? sock) as PairSocket
  const pair = new StreamPair(fe.ctx.nextConnectionId(), client, fe)
  pair.pooled = fe.ctx.pooledReads && client !== sock
  client[kPair] = pair
  client.on('error', onClientError)
  client.on('close', onClientClose)
  noteAccepted(pair)
  dial(pair)
}

function connectBackend (p: StreamPair, b: Backend): void {
  const s = (p.pooled ? connectBuffered(b.ip, b.port, onBackendRead) : connect({ host: b.ip, port: b.port, allowHalfOpen: true, noDelay: true })) as PairSocket
  s[kPair] = p
  p.backend = s
  p.backendClosed = false
  s.on('connect', onBackendConnect)
  s.on('error', onBackendError)
  s.on('close', onBackendClose)
}

function onBackendConnect (this: PairSocket): void {
  const p = this[kPair]
  if (p.clientClosed) { this.destroy(); return }
  noteConnected(p)
  const pp = tcpMode(p.rt, p.fe.ctx)
  if (pp !== 'none') { this.cork(); this.write(tcpHeader(p.fe, pp, p.clientIP, p.clientPort, p.client)); held.hold(this) } // PROXY protocol: before any client byte, in one write with the first of them
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

/** The PROXY protocol header and what the client sent this turn go out together (frontend/proxy-protocol.ts). */
const held = new HeldHeaders<Socket>((s) => { if (s.writableCorked > 0) s.uncork() })

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

// Pooled reads: the same, through net's `onread` (see stream-reads.ts); returning false stops
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
  backendSocketFailed(p, p.client, err)
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
  if (p.backendClosed) notePairFinished(p)
}

function onBackendClose (this: PairSocket, hadError: boolean): void {
  const p = this[kPair]
  p.backendClosed = true
  releaseReadBuffer(this)
  if (hadError && !p.client.destroyed) {
    if (p.reason === null) p.reason = 'backend-error'
    reset(p.client)
  }
  if (p.clientClosed) notePairFinished(p)
}

/** Ends a connection that cannot (or may no longer) be served: the client gets a reset, not a hang. */
function abort (p: StreamPair, reason: CloseReason): void {
  if (p.reason === null) p.reason = reason
  if (p.timer !== null) { clearTimeout(p.timer); p.timer = null }
  const b = p.backend
  if (b !== null && !b.destroyed) b.destroy()
  if (!p.client.destroyed) reset(p.client)
  else if (p.backendClosed || b === null) notePairFinished(p)
}
