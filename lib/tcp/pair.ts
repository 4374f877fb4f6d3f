import type { Backend } from '../balancer/backend.js'
import type { DataPlaneContext, FrontendSpec } from '../frontend/contract.js'
import { type CloseReason, hostPort, observed } from '../frontend/events.js'
import type { ServicePortRuntime } from '../frontend/runtime.js'

/**
 * What a pair needs from the listener that accepted it (implemented by TcpFrontend), as UDP
 * sessions have their SessionHost: the engines and the dial ladder see this, never the class.
 */
export interface PairHost {
  readonly spec: FrontendSpec
  readonly rt: ServicePortRuntime
  readonly ctx: DataPlaneContext
  /** The port actually bound: events name the frontend the client reached. */
  readonly boundPort: number
  readonly pairs: Set<PairBase>
  /** loadBalancerSourceRanges apply at this address. */
  readonly checksSource: boolean
  /** True if the connection limits leave room for one more connection (it is then counted as active). */
  admit (): boolean
  /** An accept failed (EMFILE and the like): counted, logged once per episode. */
  acceptError (code: string): void
}

/**
 * One proxied connection, as the frontend and the accounting see it, whichever engine moves
 * its bytes (uv-engine.ts: libuv handles; stream-engine.ts: net.Socket). The engine implements
 * the abstract part; the dial ladder (dial.ts), the counters and the events are written once.
 */
export abstract class PairBase {
  readonly id: number
  readonly fe: PairHost
  readonly rt: ServicePortRuntime
  /** Accept time, performance.now() (ms): the duration histograms and the close event read it. */
  readonly start: number
  endpoint: Backend | null = null
  attempt = 0
  timer: NodeJS.Timeout | null = null
  reason: CloseReason | null = null
  connected = false
  finished = false
  /** Idle sweep state (--tcp-idle-timeout): byte count at the last sweep, sweeps since it moved. */
  idleBytes = -1
  idleTicks = 0
  /** Endpoints this connection failed to dial; allocated on the first failure only. */
  tried: Backend[] | null = null
  private peerIP: string | null = null
  private peerPort = 0

  constructor (id: number, fe: PairHost) {
    this.id = id
    this.fe = fe
    this.rt = fe.rt
    this.start = performance.now()
  }

  /** The client's address: asked of the kernel only when affinity or an event needs it. */
  get clientIP (): string {
    if (this.peerIP === null) this.lookupPeer()
    return this.peerIP as string
  }

  get clientPort (): number {
    if (this.peerIP === null) this.lookupPeer()
    return this.peerPort
  }

  private lookupPeer (): void {
    const a = this.peer()
    this.peerIP = a.address
    this.peerPort = a.port
  }

  /** The client socket's remote address ('' and 0 once closed). */
  protected abstract peer (): { address: string, port: number }
  /** Bytes read from the client, and written to it. */
  abstract bytesIn (): number
  abstract bytesOut (): number
  /** Bytes accepted for writing but not yet taken by the kernel, both directions. */
  abstract queued (): number
  /** Ends the connection now, the client reset (a refused or broken service, or shutdown). */
  abstract abort (reason: CloseReason): void
  /** Closes a connection found idle by the sweep. */
  abstract closeIdle (): void
  /** Starts connecting to `b`; '' when under way, else why it failed at once. */
  abstract connect (b: Backend): string
  /** Drops the backend socket of a dial that failed or was given up on. */
  abstract cancelDial (): void
  /** The client went away while its dial was under way: nothing is left to retry for. */
  abstract clientGone (): boolean
}

/**
 * The endpoint for the next dial: the balancer's pick, skipping endpoints this connection
 * already failed on while others remain (concurrent connections share the round-robin cursor,
 * so a retry could otherwise land on the endpoint that just refused it).
 */
export function pickEndpoint (p: PairBase): Backend | undefined {
  const rt = p.rt
  const candidates = p.fe.spec.local ? rt.localEndpoints : undefined
  const ip = rt.balancer.usesClientIP ? p.clientIP : ''
  let b = rt.balancer.pick(ip, p.attempt > 0, candidates, p.tried)
  const tried = p.tried
  if (tried !== null && b !== undefined) {
    const n = (candidates ?? rt.balancer.endpoints).length
    for (let i = 0; i < n && b !== undefined && tried.includes(b); i++) b = rt.balancer.pick(ip, true, candidates)
  }
  if (b === undefined && p.attempt === 0) rt.noEndpoints++
  return b
}

/** The backend answered: count it and tell listeners. */
export function noteConnected (p: PairBase): void {
  if (p.timer !== null) { clearTimeout(p.timer); p.timer = null }
  p.connected = true
  p.rt.dialDuration.observe((performance.now() - p.start) / 1000)
  const b = p.endpoint as Backend
  b.accepted++
  b.active++
  b.consecutiveFailures = 0 // endpoint health: a success clears the run of failures (and probation)
  const ev = p.fe.ctx.events
  if (observed(ev, 'endpoint')) ev.emit('endpoint', { ...baseEvent(p), endpoint: b.key, attempt: p.attempt })
}

/** A dial failed: count it and tell listeners. */
export function noteDialFailed (p: PairBase, error: string): void {
  if (p.timer !== null) { clearTimeout(p.timer); p.timer = null }
  const b = p.endpoint
  const rt = p.rt
  rt.dialFailures++
  if (b !== null) {
    b.dialFailures++
    ;(p.tried ??= []).push(b)
    b.consecutiveFailures++
  }
  const ev = p.fe.ctx.events
  if (observed(ev, 'dialFailed')) ev.emit('dialFailed', { ...baseEvent(p), endpoint: b?.key ?? '', attempt: p.attempt, error })
  // Outlier detection (frontend/endpoint-health.ts): an increment and a compare, until a run is long enough.
  if (b !== null && b.consecutiveFailures >= rt.ejectAfter && rt.health !== null) rt.health.failedInARow(b, error)
  p.endpoint = null
}

/** Both sides are closed: release the connection's counts and report it. */
export function notePairFinished (p: PairBase): void {
  if (p.finished) return
  p.finished = true
  if (p.timer !== null) { clearTimeout(p.timer); p.timer = null }
  p.fe.ctx.limits.active-- // admitted on accept
  const rt = p.rt
  rt.active--
  rt.serviceConnections.active--
  const ms = performance.now() - p.start
  rt.connectionDuration.observe(ms / 1000)
  const b = p.endpoint
  if (b !== null && p.connected) b.active--
  p.fe.pairs.delete(p)
  const ev = p.fe.ctx.events
  if (observed(ev, 'close')) {
    ev.emit('close', {
      ...baseEvent(p),
      endpoint: p.connected && b !== null ? b.key : null,
      bytesIn: p.bytesIn(),
      bytesOut: p.bytesOut(),
      durationMs: Math.round(ms),
      reason: p.reason ?? 'eof',
    })
  }
}

/** A connection was accepted: count it and tell listeners. */
export function noteAccepted (p: PairBase): void {
  const fe = p.fe
  fe.pairs.add(p)
  const rt = fe.rt
  rt.accepted++
  rt.active++
  rt.serviceConnections.active++
  const ev = fe.ctx.events
  // The client's address is gone once its socket closes: fetch it now if an event will need it.
  if (observed(ev, 'close') || observed(ev, 'dialFailed') || observed(ev, 'endpoint')) void p.clientIP
  if (observed(ev, 'accept')) ev.emit('accept', baseEvent(p))
}

function baseEvent (p: PairBase): { id: number, service: string, port: string, protocol: 'TCP', client: string, frontend: string } {
  return {
    id: p.id,
    service: `${p.rt.namespace}/${p.rt.service}`,
    port: p.rt.portLabel,
    protocol: 'TCP',
    client: hostPort(p.clientIP, p.clientPort),
    // The listener, not the socket: a closed socket no longer knows its local address.
    frontend: hostPort(p.fe.spec.host, p.fe.boundPort),
  }
}
