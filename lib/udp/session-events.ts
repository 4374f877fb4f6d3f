import type { EventEmitter } from 'node:events'
import { type CloseReason, hostPort, observed } from '../frontend/events.js'

/**
 * The events a UDP session emits beyond the TCP-shaped ones: sessionOpen and sessionClose
 * (docs/api.md, "Its events"). Called by session.ts; no event object is built unless the
 * event has a listener.
 */

/** What the events read of a session (structural: session.ts imports this file, never the reverse). */
export interface EventSession {
  readonly id: number
  readonly clientIP: string
  readonly clientPort: number
  readonly start: number
  readonly backend: { readonly key: string }
  readonly rt: { readonly namespace: string, readonly service: string, readonly portLabel: string }
  readonly host: { readonly spec: { readonly host: string }, readonly boundPort: number, readonly ctx: { readonly events: EventEmitter } }
  readonly bytesIn: number
  readonly bytesOut: number
  readonly datagramsIn: number
  readonly datagramsOut: number
}

export interface UdpBaseEvent { id: number, service: string, port: string, protocol: 'UDP', client: string, frontend: string }

export function baseEvent (s: EventSession): UdpBaseEvent {
  return {
    id: s.id,
    service: `${s.rt.namespace}/${s.rt.service}`,
    port: s.rt.portLabel,
    protocol: 'UDP',
    client: hostPort(s.clientIP, s.clientPort),
    frontend: hostPort(s.host.spec.host, s.host.boundPort),
  }
}

/** A session was opened for a new client address, on the endpoint its balancer picked. */
export function emitSessionOpen (s: EventSession): void {
  const ev = s.host.ctx.events
  if (observed(ev, 'sessionOpen')) ev.emit('sessionOpen', { ...baseEvent(s), endpoint: s.backend.key })
}

/** `close` (bytes, TCP-shaped) and `sessionClose` (datagrams too), each only when listened to. */
export function emitSessionClose (s: EventSession, reason: CloseReason): void {
  const ev = s.host.ctx.events
  const close = observed(ev, 'close')
  const session = observed(ev, 'sessionClose')
  if (!close && !session) return
  const durationMs = Date.now() - s.start
  const base = baseEvent(s)
  if (close) ev.emit('close', { ...base, endpoint: s.backend.key, bytesIn: s.bytesIn, bytesOut: s.bytesOut, durationMs, reason })
  if (session) {
    ev.emit('sessionClose', {
      ...base,
      endpoint: s.backend.key,
      datagramsIn: s.datagramsIn,
      datagramsOut: s.datagramsOut,
      durationMs,
      reason,
    })
  }
}
