import type { EventEmitter } from 'node:events'
import { observed } from '../frontend/events.js'
import { type ActiveToxic, type FaultSet, jittered, rolls } from '../faults/fault-set.js'

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
 * one stops (what it held goes on at once, in order).
 */

/** Per session and direction, at most this many datagrams (and bytes) wait in a latency toxic; past either a datagram is dropped (`fault-queue-full`). */
export const FAULT_HOLD_MAX_DATAGRAMS = 1024
export const FAULT_HOLD_MAX_BYTES = 2 * 1024 * 1024

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
      const n = (tx.up?.discard() ?? 0) + (tx.down?.discard() ?? 0)
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
  // What the old pipes still hold goes now, in order, before anything the new ones let through.
  tx.up?.flush()
  tx.down?.flush()
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

function active (tx: SessionToxics): SessionToxics | null {
  return tx.up === null && tx.down === null && tx.downMode === '' ? null : tx
}

function sameList (a: readonly ActiveToxic[], b: readonly ActiveToxic[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** An attribute, read when used: an update changes it in place. */
function num (a: ActiveToxic, name: string): number {
  const v = a.toxic.attributes[name]
  return typeof v === 'number' ? v : 0
}

/**
 * One direction of one session: the stages its toxics make. Datagrams held by latency wait in
 * a queue ordered by due time (one timer, for the head). Without jitter every datagram waits
 * the same, so order is kept; with jitter each draws its own delay in [latency - jitter,
 * latency + jitter) and a later one can overtake an earlier one, as with netem.
 */
export class Pipe {
  private readonly loss: ActiveToxic[] = []
  private readonly duplicate: ActiveToxic[] = []
  private reorder: ActiveToxic | null = null
  private readonly latency: ActiveToxic[] = []
  /** reorder's held datagram, waiting for the next one (or its `delay`). */
  private held: Buffer | null = null
  private heldTimer: NodeJS.Timeout | null = null
  private readonly q: Buffer[] = []
  private readonly due: number[] = []
  private qBytes = 0
  private timer: NodeJS.Timeout | null = null
  private timerAt = 0

  private constructor (
    private readonly s: ToxicSession,
    private readonly send: Send<ToxicSession>,
    private readonly faults: FaultSet,
  ) {}

  /** The pipe for one stream, or null when none of `toxics` acts on it. */
  static of<S extends ToxicSession> (s: S, send: Send<S>, toxics: readonly ActiveToxic[], stream: 'upstream' | 'downstream', faults: FaultSet): Pipe | null {
    let p: Pipe | null = null
    for (const a of toxics) {
      const type = a.toxic.type
      if (a.toxic.stream !== stream) continue
      if (type !== 'loss' && type !== 'duplicate' && type !== 'reorder' && type !== 'latency') continue
      p ??= new Pipe(s, send as Send<ToxicSession>, faults)
      if (type === 'loss') p.loss.push(a)
      else if (type === 'duplicate') p.duplicate.push(a)
      else if (type === 'reorder') p.reorder ??= a
      else p.latency.push(a)
    }
    return p
  }

  push (msg: Buffer): void {
    const random = this.s.host.ctx.random
    for (const a of this.loss) {
      if (a.removed || random() >= num(a, 'probability')) continue
      this.faults.affected(a.toxic, 1, msg.length)
      return
    }
    let copies = 1
    for (const a of this.duplicate) {
      if (a.removed || random() >= num(a, 'probability')) continue
      this.faults.affected(a.toxic, 1, msg.length)
      copies = 2
      break
    }
    this.reordered(msg, random)
    if (copies === 2) this.reordered(msg, random)
  }

  /** reorder: a datagram is held (with its probability) and goes right after the next one, or after `delay` ms. */
  private reordered (msg: Buffer, random: () => number): void {
    const r = this.reorder
    if (r === null || r.removed) { this.delayed(msg); return }
    const held = this.held
    if (held !== null) {
      this.stopHeldTimer()
      this.held = null
      this.delayed(msg)
      this.delayed(held)
      return
    }
    if (random() < num(r, 'probability')) {
      this.faults.affected(r.toxic, 1, msg.length)
      this.held = msg
      this.heldTimer = setTimeout(heldExpired, num(r, 'delay'), this)
      this.heldTimer.unref()
      return
    }
    this.delayed(msg)
  }

  /** Called by the reorder timer: no next datagram came in time. */
  heldExpired (): void {
    this.heldTimer = null
    const h = this.held
    this.held = null
    if (h !== null) this.delayed(h)
  }

  private stopHeldTimer (): void {
    if (this.heldTimer !== null) {
      clearTimeout(this.heldTimer)
      this.heldTimer = null
    }
  }

  private delayed (msg: Buffer): void {
    const random = this.s.host.ctx.random
    let wait = 0
    for (const a of this.latency) if (!a.removed) wait += jittered(a.toxic.attributes, random)
    if (wait <= 0) { this.deliver(msg); return }
    const q = this.q
    if (q.length >= FAULT_HOLD_MAX_DATAGRAMS || this.qBytes + msg.length > FAULT_HOLD_MAX_BYTES) {
      this.s.host.drop('fault-queue-full', 1)
      return
    }
    for (const a of this.latency) if (!a.removed) this.faults.affected(a.toxic, 1, msg.length)
    const at = performance.now() + wait
    // Ordered by due time, equal times in arrival order: without jitter this is an append.
    const due = this.due
    let i = q.length
    while (i > 0 && (due[i - 1] as number) > at) i--
    if (i === q.length) {
      q.push(msg)
      due.push(at)
    } else {
      q.splice(i, 0, msg)
      due.splice(i, 0, at)
    }
    this.qBytes += msg.length
    if (i === 0) this.arm()
  }

  private arm (): void {
    const at = this.due[0]
    if (at === undefined) return
    if (this.timer !== null) {
      if (this.timerAt === at) return
      clearTimeout(this.timer)
    }
    this.timerAt = at
    // Node's timers can fire up to a millisecond early against performance.now(): release() re-arms.
    this.timer = setTimeout(release, Math.max(1, Math.ceil(at - performance.now())), this)
    this.timer.unref()
  }

  /** Called by the latency timer: sends every datagram now due, re-arms for the next. */
  release (): void {
    this.timer = null
    const now = performance.now()
    const q = this.q
    const due = this.due
    let n = 0
    while (n < q.length && (due[n] as number) <= now) n++
    const out = q.splice(0, n)
    due.splice(0, n)
    for (const m of out) {
      this.qBytes -= m.length
      this.deliver(m)
    }
    this.arm()
  }

  private deliver (msg: Buffer): void {
    if (!this.s.closed) this.send(this.s, msg)
  }

  /** The toxics changed: what is held goes now, in order (reorder's held datagram after the queue). */
  flush (): void {
    this.stopTimers()
    const out = this.q.splice(0)
    this.due.length = 0
    this.qBytes = 0
    if (this.held !== null) out.push(this.held)
    this.held = null
    for (const m of out) this.deliver(m)
  }

  /** The session ended: drops what is held and stops the timers; returns how many datagrams were dropped. */
  discard (): number {
    this.stopTimers()
    const n = this.q.length + (this.held === null ? 0 : 1)
    this.q.length = 0
    this.due.length = 0
    this.qBytes = 0
    this.held = null
    return n
  }

  private stopTimers (): void {
    this.stopHeldTimer()
    if (this.timer !== null) {
      clearTimeout(this.timer)
      this.timer = null
    }
  }
}

function heldExpired (p: Pipe): void {
  p.heldExpired()
}

function release (p: Pipe): void {
  p.release()
}
