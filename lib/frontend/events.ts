import type { EventEmitter } from 'node:events'

/** Why a connection ended. Stable strings: access logs and tests match on them. */
export type CloseReason =
  | 'eof' // both sides finished cleanly (half-close propagated)
  | 'client-error' // the client reset or errored
  | 'backend-error' // the backend reset or errored after connecting
  | 'dial-failed' // every dial attempt failed
  | 'no-endpoints' // the service port had no (eligible) endpoint
  | 'idle-timeout'
  | 'shutdown' // drained past --shutdown-grace, or close()
  | 'removed' // the endpoint or service went away

export interface ConnectionEvent {
  /** Per-proxy connection number. */
  id: number
  /** `namespace/name`. */
  service: string
  /** Port name, or number when unnamed. */
  port: string
  protocol: 'TCP' | 'UDP'
  /** `ip:port` of the client. */
  client: string
  /** `ip:port` the client connected to. */
  frontend: string
}

export interface EndpointEvent extends ConnectionEvent {
  endpoint: string
  attempt: number
}

export interface DialFailedEvent extends EndpointEvent {
  error: string
}

export interface CloseEvent extends ConnectionEvent {
  endpoint: string | null
  /** Bytes client → backend. */
  bytesIn: number
  /** Bytes backend → client. */
  bytesOut: number
  durationMs: number
  reason: CloseReason
}

export interface ProxyEventMap {
  accept: [ConnectionEvent]
  endpoint: [EndpointEvent]
  dialFailed: [DialFailedEvent]
  close: [CloseEvent]
}

/** Listeners are counted at emit time so an unobserved proxy builds no event objects. */
export function observed (ee: EventEmitter, name: keyof ProxyEventMap): boolean {
  return ee.listenerCount(name) > 0
}

export function hostPort (ip: string | undefined, port: number | undefined): string {
  if (ip === undefined || ip === '') return ''
  return ip.includes(':') ? `[${ip}]:${port ?? 0}` : `${ip}:${port ?? 0}`
}
