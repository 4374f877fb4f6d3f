/**
 * Faults ("toxics", as Toxiproxy names them) a test harness attaches to a service, a service
 * port or one endpoint. Types only: validation is in validate.ts, the live set in fault-set.ts,
 * the TCP path in tcp/toxics.ts, the UDP path in udp/toxics.ts.
 */

/** TCP: latency bandwidth slow_close timeout reset_peer slicer limit_data down. UDP: loss latency duplicate reorder down. */
export type ToxicType =
  | 'latency' | 'bandwidth' | 'slow_close' | 'timeout' | 'reset_peer' | 'slicer' | 'limit_data' | 'down'
  | 'loss' | 'duplicate' | 'reorder'

/** Toxiproxy's words: upstream is client → endpoint, downstream endpoint → client. */
export type ToxicStream = 'upstream' | 'downstream'

/** Where a toxic applies: every port of a service, one port (name or number), or one endpoint of it. */
export interface FaultScope {
  /** `namespace/name`. */
  service: string
  port?: string
  /** `ip:port`; with no port given, that endpoint on every port of the service. */
  endpoint?: string
}

/** What a caller gives: Toxiproxy's toxic body. `stream` 'both' makes two toxics, `name`-upstream and `name`-downstream. */
export interface ToxicInput {
  name?: string
  type: ToxicType
  stream?: ToxicStream | 'both'
  /** Probability in [0, 1] that a new connection (UDP: session) gets it. Default 1. */
  toxicity?: number
  attributes?: Record<string, number | string>
}

/** A validated toxic. */
export interface Toxic {
  name: string
  type: ToxicType
  stream: ToxicStream
  toxicity: number
  attributes: Record<string, number | string>
}

/** A toxic with where it applies (listings). */
export interface ScopedToxic extends Toxic {
  scope: FaultScope
  /** Connections (TCP) or sessions (UDP) it was applied to, after the toxicity roll (`down`: dials it failed). */
  applied?: number
  /** Bytes it affected: delayed, throttled, sliced, dropped, cut off, held. */
  bytes?: number
  /** UDP datagrams it affected: dropped, delayed, duplicated, reordered. */
  datagrams?: number
}
