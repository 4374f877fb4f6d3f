import type { EventEmitter } from 'node:events'
import { observed } from '../frontend/events.js'
import { type ActiveToxic, type FaultSet, rolls } from '../faults/fault-set.js'
import { Pipe } from './toxic-pipe.js'

export { FAULT_HOLD_MAX_BYTES, FAULT_HOLD_MAX_DATAGRAMS } from './toxic-pipe.js'

/**
 * Faults on UDP sessions (docs/udp.md, "Faults"): what a session's datagrams go through when
 * its port has a fault set. session.ts calls in only when `rt.faults !== null`, so a port
 * without faults pays one field check per datagram and nothing else.
 *
 * Per direction (upstream client → endpoint, downstream endpoint → client) the stages run in
 * this order: loss, duplicate, reorder, latency. Several toxics of one type in one direction
 * each apply in turn (two losses of 0.5 pass a quarter; two latencies add up).
 *
 * A session follows its port's fault set: a toxic added while it flows applies from its next
 * datagram (after the session's toxicity roll for it), a changed one at once, and a removed
 * one stops. Datagrams already held keep the delay they drew (as netem's queue does when its
 * delay changes): their pipe is retired, and delivers them when due.
 */

/** Retired pipes (toxics changed while they held datagrams) a session keeps; past this the oldest delivers what it holds at once. */
export const RETIRED_PIPES_MAX = 4

/** What the toxics need of a session (structural: session.ts imports this file, never the reverse). */
export interface ToxicSession {
  readonly id: number
  readonly closed: boolean
  tx: SessionToxics | null
  readonly backend: { readonly key: string }
  readonly rt: { readonly faults: FaultSet | null, readonly namespace: string, readonly service: string, readonly portLabel: string }
  readonly host: {
    readonly ctx: { readonly random: () => number, readonly events: EventEmitter }
    drop: (why: 'fault-queue-full' | 'session-ended', n: number) => void
  }
}

type Send<S> = (s: S, msg: Buffer) => void

/** The toxics one session got (toxicity rolled once per session and toxic), per direction. */
export class SessionToxics {
  /** The fault set the pipes were built for (the registry builds a new one at every change). */
  set: FaultSet | null = null
  endpoint = ''
  /** The toxics that applied when the pipes were built (rolled in or not): a new set with the same list keeps the pipes. */
  applicable: readonly ActiveToxic[] = []
  /** Toxicity rolls, kept across rebuilds: a toxic is rolled once per session (an update changes it in place: no new roll). */
  readonly rolled = new Map<ActiveToxic, boolean>()
  up: Pipe | null = null
  down: Pipe | null = null
  /** Pipes of earlier toxics still holding datagrams (delivered when due); null until there is one. */
  retired: Pipe[] | null = null
  /** A `down` toxic applies: 'refuse' (as an ICMP unreachable: the session moves on) or 'blackhole' (datagrams vanish). */
  downMode: 'refuse' | 'blackhole' | '' = ''
  downToxic: ActiveToxic | null = null
}

/** The hooks session.ts calls; built once per module with its send functions (no closure per session or datagram). */
export interface DatagramToxics<S extends ToxicSession> {
  /** A datagram from the client, while the port has faults. */
  up: (s: S, msg: Buffer) => void
  /** A datagram from the endpoint, while the port has faults. */
  down: (s: S, msg: Buffer) => void
  /** The session ended: what its toxics still hold is dropped (`session-ended`), their timers stop. */
  end: (s: S) => void
}

/**
 * `passUp`/`passDown` forward a datagram as if there were no fault; `refuse` handles a datagram
 * refused by a `down` toxic in 'refuse' mode as an ICMP unreachable (a dial failure: next endpoint).
 */
export function datagramToxics<S extends ToxicSession> (passUp: Send<S>, passDown: Send<S>, refuse: (s: S) => void): DatagramToxics<S> {
  return {
    up (s, msg) {
      const tx = current(s, passUp, passDown)
      if (tx === null) { passUp(s, msg); return }
      if (tx.downMode !== '') {
        if (tx.downToxic !== null) tx.set?.affected(tx.downToxic.toxic, 1, msg.length)
        if (tx.downMode === 'refuse') refuse(s)
        return
      }
      if (tx.up === null) passUp(s, msg)
      else tx.up.push(msg)
    },
    down (s, msg) {
      const tx = current(s, passUp, passDown)
      if (tx === null) { passDown(s, msg); return }
      if (tx.downMode !== '') {
        if (tx.downToxic !== null) tx.set?.affected(tx.downToxic.toxic, 1, msg.length)
        return
      }
      if (tx.down === null) passDown(s, msg)
      else tx.down.push(msg)
    },
    end (s) {
      const tx = s.tx
      if (tx === null) return
      let n = (tx.up?.discard() ?? 0) + (tx.down?.discard() ?? 0)
      if (tx.retired !== null) for (const p of tx.retired) n += p.discard()
      if (n > 0) s.host.drop('session-ended', n)
      s.tx = null
    },
  }
}

/**
 * The session's toxics for its port's current fault set and its current endpoint (a dial
 * failure moves a session; an endpoint-scoped toxic then no longer applies). null when no
 * toxic applies to it (none matches, or none won its toxicity roll).
 */
function current<S extends ToxicSession> (s: S, passUp: Send<S>, passDown: Send<S>): SessionToxics | null {
  const faults = s.rt.faults
  if (faults === null) return null
  let tx = s.tx
  if (tx !== null && tx.set === faults && tx.endpoint === s.backend.key) return active(tx)
  const list = faults.entriesFor(s.backend.key)
  if (tx === null) {
    if (list.length === 0) return null
    tx = s.tx = new SessionToxics()
  }
  tx.set = faults
  if (tx.endpoint === s.backend.key && sameList(tx.applicable, list)) return active(tx)
  tx.endpoint = s.backend.key
  tx.applicable = list
  retire(tx, tx.up)
  retire(tx, tx.down)
  const ctx = s.host.ctx
  const got: ActiveToxic[] = []
  for (const a of list) {
    if (a.removed) continue
    let on = tx.rolled.get(a)
    if (on === undefined) {
      on = rolls(a, ctx.random)
      tx.rolled.set(a, on)
      if (on) applied(s, a)
    }
    if (on) got.push(a)
  }
  tx.downMode = ''
  tx.downToxic = null
  for (const a of got) {
    if (a.toxic.type !== 'down') continue
    tx.downToxic = a
    tx.downMode = a.toxic.attributes.mode === 'blackhole' ? 'blackhole' : 'refuse'
    break
  }
  tx.up = Pipe.of(s, passUp, got, 'upstream', faults)
  tx.down = Pipe.of(s, passDown, got, 'downstream', faults)
  return active(tx)
}

/** A toxic won its roll for a session: counted (svcproxy_fault_connections_total), and the `fault` event when observed. */
function applied (s: ToxicSession, a: ActiveToxic): void {
  const t = a.toxic
  s.rt.faults?.applied(t)
  const ev = s.host.ctx.events
  if (!observed(ev, 'fault')) return
  ev.emit('fault', {
    id: s.id,
    service: `${s.rt.namespace}/${s.rt.service}`,
    port: s.rt.portLabel,
    protocol: 'UDP',
    endpoint: s.backend.key,
    toxic: t.name,
    type: t.type,
    stream: t.stream,
  })
}

/** The toxics changed: a pipe still holding datagrams delivers them when due (bounded: RETIRED_PIPES_MAX). */
function retire (tx: SessionToxics, p: Pipe | null): void {
  const list = tx.retired === null ? null : tx.retired.filter(holding)
  tx.retired = list === null || list.length === 0 ? null : list
  if (p === null || !p.holding()) return
  const r = (tx.retired ??= [])
  r.push(p)
  if (r.length > RETIRED_PIPES_MAX) r.shift()?.flush()
}

function holding (p: Pipe): boolean {
  return p.holding()
}

function active (tx: SessionToxics): SessionToxics | null {
  return tx.up === null && tx.down === null && tx.downMode === '' ? null : tx
}

function sameList (a: readonly ActiveToxic[], b: readonly ActiveToxic[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
