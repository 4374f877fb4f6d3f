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
