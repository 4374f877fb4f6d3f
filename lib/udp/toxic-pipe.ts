import { type ActiveToxic, type FaultSet, jittered } from '../faults/fault-set.js'

/**
 * One stream of one UDP session under faults: the stages its toxics make (udp/toxics.ts builds
 * it, and docs/udp.md "Faults" describes it).
 */

/** Per session and direction, at most this many datagrams (and bytes) wait in a latency toxic; past either a datagram is dropped (`fault-queue-full`). */
export const FAULT_HOLD_MAX_DATAGRAMS = 1024
export const FAULT_HOLD_MAX_BYTES = 2 * 1024 * 1024

/** What a pipe needs of its session (structural: no import of session.ts or toxics.ts). */
export interface PipeOwner {
  readonly closed: boolean
  readonly host: {
    readonly ctx: { readonly random: () => number }
    drop: (why: 'fault-queue-full' | 'session-ended', n: number) => void
  }
}

type Send = (s: PipeOwner, msg: Buffer) => void

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
    private readonly s: PipeOwner,
    private readonly send: Send,
    private readonly faults: FaultSet,
  ) {}

  /** The pipe for one stream, or null when none of `toxics` acts on it. */
  static of<S extends PipeOwner> (s: S, send: (s: S, msg: Buffer) => void, toxics: readonly ActiveToxic[], stream: 'upstream' | 'downstream', faults: FaultSet): Pipe | null {
    let p: Pipe | null = null
    for (const a of toxics) {
      const type = a.toxic.type
      if (a.toxic.stream !== stream) continue
      if (type !== 'loss' && type !== 'duplicate' && type !== 'reorder' && type !== 'latency') continue
      p ??= new Pipe(s, send as Send, faults)
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

  /** Datagrams wait here (latency queue or reorder's held one). */
  holding (): boolean {
    return this.q.length > 0 || this.held !== null
  }

  /** Too many retired pipes: what is held goes now, in order (reorder's held datagram after the queue). */
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
