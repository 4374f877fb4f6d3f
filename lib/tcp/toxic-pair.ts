import { connect, type Socket } from 'node:net'
import type { Backend } from '../balancer/backend.js'
import { type ActiveToxic, type FaultSet, rolls } from '../faults/fault-set.js'
import type { CloseReason } from '../frontend/events.js'
import { tcpHeader, tcpMode } from '../frontend/proxy-protocol.js'
import { dial } from './dial.js'
import { backendSocketFailed, reset } from './socket-ends.js'
import { noteAccepted, noteConnected, notePairFinished, PairBase, type PairHost } from './pair.js'
import { noteFault, type PipeHost, ToxicPipe } from './toxics.js'

/**
 * A TCP connection accepted while its port has toxics (`rt.faults !== null`), whichever engine
 * the proxy runs: net.Sockets ('data' events) with a ToxicPipe per direction (toxics.ts). The
 * toxics are resolved once the endpoint answers (the port's and that endpoint's own), each
 * rolled against its toxicity; connection-level ones (timeout, reset_peer) arm a timer here.
 * Counters, events and the dial ladder are the shared ones (pair.ts, dial.ts).
 */
class FaultPair extends PairBase implements PipeHost {
  readonly client: Socket
  backend: Socket | null = null
  clientClosed = false
  backendClosed = true
  up: ToxicPipe | null = null
  down: ToxicPipe | null = null
  faults: FaultSet | null = null
  /** timeout and reset_peer timers, cleared when the connection ends. */
  readonly timers = new Set<NodeJS.Timeout>()

  constructor (id: number, client: Socket, fe: PairHost) {
    super(id, fe)
    this.client = client
  }

  get random (): () => number { return this.fe.ctx.random }

  protected peer (): { address: string, port: number } {
    return { address: this.client.remoteAddress ?? '', port: this.client.remotePort ?? 0 }
  }

  bytesIn (): number { return this.client.bytesRead }
  bytesOut (): number { return this.client.bytesWritten }
  queued (): number { return this.client.writableLength + (this.backend?.writableLength ?? 0) + (this.up?.held ?? 0) + (this.down?.held ?? 0) }
  clientGone (): boolean { return this.clientClosed }
  connect (b: Backend): string { connectBackend(this, b); return '' } // failures arrive as 'error'

  abort (reason: CloseReason): void {
    if (this.reason === null) this.reason = reason
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null }
    this.release()
    const b = this.backend
    if (b !== null && !b.destroyed) b.destroy()
    if (!this.client.destroyed) reset(this.client)
    else if (this.backendClosed || b === null) finish(this)
  }

  cancelDial (): void {
    const s = this.backend
    if (s === null) return
    this.backend = null // its late events are ignored
    this.backendClosed = true
    s.on('error', ignore)
    s.destroy()
  }

  closeIdle (): void {
    if (this.reason === null) this.reason = 'idle-timeout'
    this.client.destroy()
    this.backend?.destroy()
  }

  /** timeout, limit_data: both sides get a FIN once what was written to them is out. */
  faultClose (): void {
    if (this.reason === null) this.reason = 'fault'
    this.release()
    endSoon(this.client)
    if (this.backend !== null) endSoon(this.backend)
  }

  /** reset_peer: both sides get an RST. */
  faultReset (): void {
    if (this.reason === null) this.reason = 'fault'
    this.release()
    if (!this.client.destroyed) reset(this.client)
    if (this.backend !== null && !this.backend.destroyed) reset(this.backend)
  }

  /** Drops what toxics hold and their timers: nothing may keep the process (or close()) waiting. */
  release (): void {
    this.up?.dispose()
    this.down?.dispose()
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
  }
}

function ignore (): void {}

/** A connection accepted by the frontend's net.Server while its port has toxics. */
export function acceptFaulty (fe: PairHost, sock: Socket, admitted: boolean): void {
  if (!admitted) { sock.on('error', ignore); sock.resetAndDestroy(); return }
  sock.setNoDelay(true)
  const p = new FaultPair(fe.ctx.nextConnectionId(), sock, fe)
  sock.on('error', () => { onClientError(p) })
  sock.on('close', (hadError: boolean) => { onClientClose(p, hadError) })
  noteAccepted(p)
  dial(p)
}

function connectBackend (p: FaultPair, b: Backend): void {
  const s = connect({ host: b.ip, port: b.port, allowHalfOpen: true, noDelay: true })
  p.backend = s
  p.backendClosed = false
  s.on('connect', () => { onBackendConnect(p, s) })
  s.on('error', (err: NodeJS.ErrnoException) => { onBackendError(p, s, err) })
  s.on('close', (hadError: boolean) => { onBackendClose(p, s, hadError) })
}

function onBackendConnect (p: FaultPair, s: Socket): void {
  if (p.backend !== s) return
  if (p.clientClosed) { s.destroy(); return }
  noteConnected(p)
  const pp = tcpMode(p.rt, p.fe.ctx)
  if (pp !== 'none') s.write(tcpHeader(p.fe, pp, p.clientIP, p.clientPort, p.client)) // PROXY protocol: before any client byte, past the toxics
  const c = p.client
  const up = (p.up = new ToxicPipe(c, s, p))
  const down = (p.down = new ToxicPipe(s, c, p))
  const set = p.rt.faults
  const b = p.endpoint as Backend
  if (set !== null) {
    p.faults = set
    for (const e of set.entriesFor(b.key)) {
      if (e.removed || e.toxic.type === 'down' || !rolls(e, p.random)) continue
      set.applied(e.toxic)
      noteFault(p, e, b.key)
      if (e.toxic.stream === 'upstream') up.add(e)
      else down.add(e)
      if (e.toxic.type === 'timeout' || e.toxic.type === 'reset_peer') arm(p, e, performance.now(), e.toxic.attributes.timeout as number)
    }
  }
  c.on('data', (chunk: Buffer) => {
    const n = chunk.length
    p.rt.bytesUp += n
    b.bytesUp += n
    up.push(chunk)
  })
  s.on('data', (chunk: Buffer) => {
    const n = chunk.length
    p.rt.bytesDown += n
    b.bytesDown += n
    down.push(chunk)
  })
  c.on('end', () => { up.end() })
  s.on('end', () => { down.end() })
  c.on('drain', () => { down.drained() })
  s.on('drain', () => { up.drained() })
  c.resume()
}

/**
 * timeout (T > 0: close after T; 0: never, data dropped) and reset_peer (RST after T), from
 * the moment the toxic was applied. An update reaches the timer when it fires: it waits on
 * for a longer value, closes at once for a shorter one, and a timeout set to 0 never closes.
 */
function arm (p: FaultPair, e: ActiveToxic, start: number, ms: number): void {
  if (e.toxic.type === 'timeout' && ms === 0) return
  const h = setTimeout(() => {
    p.timers.delete(h)
    if (p.finished || e.removed) return
    const want = e.toxic.attributes.timeout as number
    if (e.toxic.type === 'timeout' && want === 0) return
    const left = start + want - performance.now()
    if (left > 0) { arm(p, e, start, Math.max(1, left)); return } // the loop's clock ran early, or the timeout grew
    p.faults?.affected(e.toxic, 0, 0)
    if (e.toxic.type === 'timeout') p.faultClose()
    else p.faultReset()
  }, Math.max(0, Math.ceil(ms)))
  p.timers.add(h)
}

function onClientError (p: FaultPair): void {
  if (p.reason === null) p.reason = 'client-error'
  const b = p.backend
  if (b !== null && !b.destroyed) reset(b)
}

function onBackendError (p: FaultPair, s: Socket, err: NodeJS.ErrnoException): void {
  if (p.backend === s) backendSocketFailed(p, p.client, err)
}

function onClientClose (p: FaultPair, hadError: boolean): void {
  p.clientClosed = true
  p.down?.dispose() // nothing more can reach the client; what goes to the endpoint still does
  const b = p.backend
  if (b !== null && !b.destroyed && (hadError || !p.connected)) {
    if (p.reason === null) p.reason = 'client-error'
    b.destroy()
  }
  if (p.timer !== null && !p.connected) { clearTimeout(p.timer); p.timer = null }
  if (p.backendClosed) finish(p)
}

function onBackendClose (p: FaultPair, s: Socket, hadError: boolean): void {
  if (p.backend !== s) return
  p.backendClosed = true
  p.up?.dispose()
  if (hadError && !p.client.destroyed) {
    if (p.reason === null) p.reason = 'backend-error'
    reset(p.client)
  }
  if (p.clientClosed) finish(p)
}

function finish (p: FaultPair): void {
  p.release()
  notePairFinished(p)
}

/** A FIN once the socket's queued writes are out, then the socket goes. */
function endSoon (s: Socket): void {
  if (s.destroyed) return
  s.end()
  if (s.writableFinished) s.destroy()
  else s.once('finish', () => { s.destroy() })
}
