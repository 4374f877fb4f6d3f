import type { Server } from 'node:net'
import type { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import type { Engine } from '../internals/uv-tcp.js'
import type { ProxyProtocolMode } from '../model/annotations.js'
import type { Protocol } from '../model/types.js'
import type { OutlierSettings } from '../model/endpoint-health.js'
import type { FaultSet } from '../faults/fault-set.js'
import type { ConnectionLimits } from './limits.js'
import type { ServicePortRuntime } from './runtime.js'

/** healthCheck: a LoadBalancer service's healthCheckNodePort (health-check.ts), HTTP, not proxied. */
export type FrontendKind = 'clusterIP' | 'externalIP' | 'loadBalancer' | 'nodePort' | 'healthCheck'

/** Where one service port is exposed: one socket, bound at host:port. */
export interface FrontendSpec {
  /** `PROTO/host/port`: two frontends with the same key are the same socket. */
  key: string
  protocol: Protocol
  host: string
  port: number
  kind: FrontendKind
  /** Traffic policy Local applies: only endpoints on this node are eligible. */
  local: boolean
  runtimeId: string
}

export type FrontendState = 'binding' | 'listening' | 'error' | 'closed'

export interface Frontend {
  readonly spec: FrontendSpec
  rt: ServicePortRuntime
  state: FrontendState
  error: string
  /** The port actually bound (differs from spec.port with ephemeral ports). */
  boundPort: number
  /** Resolves once bound or failed (state tells which); never rejects. */
  open (): Promise<void>
  /** Stops accepting; established connections/sessions are left to finish unless `hard`. */
  close (hard: boolean): void
  /** True once the listening socket is fully closed. */
  isClosed (): boolean
  /** Connections (TCP) or sessions (UDP) still open. */
  openCount (): number
  /** Ends sessions/connections to endpoints no longer in the set. */
  endpointsRemoved (keys: Set<string>): void
}

/** What every frontend shares with the data plane that owns it. */
export interface DataPlaneContext {
  readonly events: EventEmitter
  readonly logger: Logger
  readonly ephemeralPorts: boolean
  readonly udpTimeoutMs: number
  readonly udpMaxSessions: number
  /** What moves the bytes: libuv handles, or Node's socket APIs (internals/uv-tcp.ts). */
  readonly engine: Engine
  /** node engine: TCP reads into pooled buffers (tcp/stream-reads.ts) instead of a fresh Buffer per read. */
  readonly pooledReads: boolean
  /** --max-connections and the out-of-descriptors state, shared by every TCP frontend. */
  readonly limits: ConnectionLimits
  /** --tcp-idle-timeout in ms; 0 = off. The data plane's one sweep timer enforces it. */
  readonly tcpIdleTimeoutMs: number
  /** --outlier-*: outlier ejection defaults for services without the annotations (docs/health.md); absent: DEFAULTS. */
  readonly outlier?: OutlierSettings
  /** --proxy-protocol: the PROXY protocol header sent to endpoints of services without the annotation (frontend/proxy-protocol.ts). */
  readonly proxyProtocol: ProxyProtocolMode
  /** The toxics on a service port (api/faults.ts), asked when its runtime is built or updated; absent: none. */
  readonly faultsFor?: (rt: ServicePortRuntime) => FaultSet | null
  nextConnectionId (): number
  /** Uniform [0, 1): every random choice of the data plane (random and p2c picks, toxicity, jitter). Seeded by createProxy({ seed }). Called as-is. */
  readonly random: () => number
}

/**
 * Binds a net (or http) server at host:port. Never rejects: resolves with the port actually
 * bound, or with the error's text (EADDRINUSE, EADDRNOTAVAIL, EACCES) and port 0.
 */
export function listenServer (server: Server, host: string, port: number, backlog?: number): Promise<{ port: number, error: string }> {
  return new Promise((resolve) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      resolve({ port: 0, error: `${err.code ?? 'error'}: ${err.message}` })
    }
    server.once('error', onError)
    server.listen({ host, port, ...(backlog === undefined ? {} : { backlog }) }, () => {
      server.off('error', onError)
      const a = server.address()
      resolve({ port: typeof a === 'object' && a !== null ? a.port : port, error: '' })
    })
  })
}

export function frontendKey (protocol: Protocol, host: string, port: number): string {
  return `${protocol}/${host}/${port}`
}
