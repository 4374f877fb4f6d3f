import type { EventEmitter } from 'node:events'

import type { CloseReason } from './reasons.js'

/** Why a connection ended: one of CLOSE_REASONS (reasons.ts). */
export type { CloseReason }

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

/** A service port's endpoint set changed (joined, left, turned ready/terminating, ejected, check failed). */
export interface EndpointsChangedEvent {
  /** `namespace/name`. */
  service: string
  port: string
  protocol: 'TCP' | 'UDP'
  /** `ip:port` of every endpoint that now takes new connections, in balancer order. */
  endpoints: string[]
}

/** A UDP session (one client address) opened or closed. */
export interface SessionEvent extends ConnectionEvent {
  protocol: 'UDP'
  endpoint: string
}

export interface SessionCloseEvent extends SessionEvent {
  datagramsIn: number
  datagramsOut: number
  durationMs: number
  reason: CloseReason
}

/** A fault (toxic) was applied to a new connection or UDP session (after its toxicity roll). */
export interface FaultEvent {
  /** Connection or session id (ConnectionEvent.id). */
  id: number
  service: string
  port: string
  protocol: 'TCP' | 'UDP'
  /** `ip:port` of the endpoint, when the connection has one. */
  endpoint: string | null
  toxic: string
  type: string
  stream: 'upstream' | 'downstream'
}

/** Outlier ejection or an active health check took an endpoint out of, or back into, rotation. */
export interface EndpointHealthEvent {
  service: string
  port: string
  endpoint: string
  /** 'ejected' | 'returned' (outlier detection), 'check-down' | 'check-up' (active checks). */
  change: 'ejected' | 'returned' | 'check-down' | 'check-up'
  /** Why, in words: "5 dial failures in a row", "HTTP 503", ... */
  detail: string
}

export interface ProxyEventMap {
  accept: [ConnectionEvent]
  endpoint: [EndpointEvent]
  dialFailed: [DialFailedEvent]
  close: [CloseEvent]
  endpoints: [EndpointsChangedEvent]
  sessionOpen: [SessionEvent]
  sessionClose: [SessionCloseEvent]
  fault: [FaultEvent]
  endpointHealth: [EndpointHealthEvent]
}

/** Listeners are counted at emit time so an unobserved proxy builds no event objects. */
export function observed (ee: EventEmitter, name: keyof ProxyEventMap): boolean {
  return ee.listenerCount(name) > 0
}

export function hostPort (ip: string | undefined, port: number | undefined): string {
  if (ip === undefined || ip === '') return ''
  return ip.includes(':') ? `[${ip}]:${port ?? 0}` : `${ip}:${port ?? 0}`
}
