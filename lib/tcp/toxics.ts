import type { Socket } from 'node:net'
import type { Backend } from '../balancer/backend.js'
import { type ActiveToxic, type FaultSet, jittered } from '../faults/fault-set.js'
import { observed } from '../frontend/events.js'
import type { PairBase } from './pair.js'

/**
 * TCP toxics, one direction of one faulted connection (tcp/toxic-pair.ts): chunks read from
 * `src` go through the direction's toxics in the order they were added, then to `dst`.
 *
 *   latency     each chunk released `latency` ± `jitter` ms after it was read (order kept)
 *   bandwidth   released no faster than `rate` KB/s (1 KB = 1000 bytes, as Toxiproxy), in
 *               pieces of at most 100 ms worth
 *   slicer      cut into pieces of `average_size` ± `size_variation` bytes, `delay` µs apart
 *   timeout     dropped (the connection-level timer in toxic-pair.ts closes it after `timeout`)
 *   limit_data  passed until `bytes` went through, then the connection is closed
 *   slow_close  the FIN that follows the data goes `delay` ms late
 *
 * The fault path allocates per chunk (it is not the hot path: a port without toxics never
 * comes here). Backpressure: past HOLD_MAX bytes held, or while `dst` refuses writes, `src` is
 * paused. An update reaches the next chunk; a removed toxic is skipped from the next chunk on.
 */

/** Bytes held (delayed) per direction before the source is paused. */
export const HOLD_MAX = 1 << 20

/** What a pipe asks of its connection. */
export interface PipeHost {
  readonly random: () => number
  readonly faults: FaultSet | null
  /** A toxic ends the connection: 'close' (FIN both ways once written). */
  faultClose (): void
}

export class ToxicPipe {
  readonly src: Socket
  readonly dst: Socket
  readonly toxics: ActiveToxic[] = []
  /** Per toxic: bandwidth, the time its last piece is released; limit_data, bytes passed. */
  private readonly state: number[] = []
  private readonly host: PipeHost
  private queue: Buffer[] = []
  private due: number[] = []
  private head = 0
  held = 0
  private last = 0
  private timer: NodeJS.Timeout | null = null
  /** slow_close: the FIN's delay. */
  private closeTimer: NodeJS.Timeout | null = null
  private closeAt = 0
  /** dst refused a write: wait for its 'drain'. */
  private waiting = false
  private srcPaused = false
  /** src's FIN was read / passed on to dst. */
  private ended = false
  private endSent = false
  /** limit_data reached: close once what is queued is written. */
  private closeAfter = false
  private disposed = false

  constructor (src: Socket, dst: Socket, host: PipeHost) {
    this.src = src
    this.dst = dst
    this.host = host
  }

  add (t: ActiveToxic): void {
    this.toxics.push(t)
    this.state.push(0)
  }

  /** A chunk read from src. */
  push (chunk: Buffer): void {
    if (this.disposed || this.closeAfter) return
    if (this.toxics.length === 0 && this.head === this.queue.length && !this.waiting) {
      // No toxic in this direction (the connection rolled none, or they are the other way's).
      if (!this.dst.destroyed && !this.dst.writableEnded && !this.dst.write(chunk)) {
        this.waiting = true
        this.srcPaused = true
        this.src.pause()
      }
      return
    }
    const now = performance.now()
    let bufs = [chunk]
    let times = [now]
    for (let i = 0; i < this.toxics.length && bufs.length > 0; i++) {
      const e = this.toxics[i] as ActiveToxic
      if (e.removed) continue
      const t = e.toxic
      const a = t.attributes
      const n = total(bufs)
      switch (t.type) {
        case 'latency': {
          const d = jittered(a, this.host.random)
          for (let j = 0; j < times.length; j++) times[j] = (times[j] as number) + d
          break
        }
        case 'bandwidth': {
          const rate = a.rate as number // KB/s = bytes per ms
          if (!(rate > 0)) continue
          const piece = Math.max(1, Math.floor(rate * 100))
          const nb: Buffer[] = []
          const nt: number[] = []
          for (let j = 0; j < bufs.length; j++) {
            const b = bufs[j] as Buffer
            for (let off = 0; off < b.length; off += piece) {
              const p = b.subarray(off, Math.min(b.length, off + piece))
              const start = Math.max(times[j] as number, this.state[i] as number)
              this.state[i] = start + p.length / rate
              nb.push(p)
              nt.push(this.state[i] as number)
            }
          }
          bufs = nb
          times = nt
          break
        }
        case 'slicer': {
          const avg = a.average_size as number
          const vary = a.size_variation as number
          const gap = (a.delay as number) / 1000
          const nb: Buffer[] = []
          const nt: number[] = []
          for (let j = 0; j < bufs.length; j++) {
            const b = bufs[j] as Buffer
            let at = times[j] as number
            for (let off = 0; off < b.length;) {
              const size = Math.max(1, Math.round(avg + (this.host.random() * 2 - 1) * vary))
              nb.push(b.subarray(off, Math.min(b.length, off + size)))
              nt.push(at)
              at += gap
              off += size
            }
          }
          bufs = nb
          times = nt
          break
        }
        case 'timeout':
          this.host.faults?.affected(t, 0, n)
          bufs = []
          continue
        case 'limit_data': {
          const room = (a.bytes as number) - (this.state[i] as number)
          if (n >= room) {
            this.closeAfter = true
            const nb: Buffer[] = []
            const nt: number[] = []
            let left = Math.max(0, room)
            for (let j = 0; j < bufs.length && left > 0; j++) {
              const b = bufs[j] as Buffer
              nb.push(b.length <= left ? b : b.subarray(0, left))
              nt.push(times[j] as number)
              left -= Math.min(left, b.length)
            }
            this.host.faults?.affected(t, 0, n - Math.max(0, room))
            bufs = nb
            times = nt
          }
          this.state[i] = (this.state[i] as number) + Math.min(n, Math.max(0, room))
          continue
        }
        default:
          continue
      }
      this.host.faults?.affected(t, 0, n)
    }
    for (let j = 0; j < bufs.length; j++) {
      const b = bufs[j] as Buffer
      const at = Math.max(times[j] as number, this.last)
      this.last = at
      this.queue.push(b)
      this.due.push(at)
      this.held += b.length
    }
    if (this.held > HOLD_MAX && !this.srcPaused) { this.srcPaused = true; this.src.pause() }
    this.flush()
  }

  /** src's FIN: passed on once everything before it is written (and after slow_close's delay). */
  end (): void {
    this.ended = true
    if (this.head === this.queue.length) this.finish()
  }

  /** dst drained. */
  drained (): void {
    this.waiting = false
    this.flush()
  }

  /** The pipe's dst closed, or the connection ended: nothing more is written; timers go. */
  dispose (): void {
    this.disposed = true
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null }
    if (this.closeTimer !== null) { clearTimeout(this.closeTimer); this.closeTimer = null }
    this.queue = []
    this.due = []
    this.head = 0
    this.held = 0
  }

  private flush (): void {
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null }
    if (this.disposed) return
    const now = performance.now()
    while (this.head < this.queue.length && !this.waiting) {
      const at = this.due[this.head] as number
      if (at > now) {
        this.timer = setTimeout(onTimer, Math.max(1, Math.ceil(at - now)), this)
        return
      }
      const b = this.queue[this.head] as Buffer
      this.head++
      this.held -= b.length
      if (this.dst.destroyed || this.dst.writableEnded) continue
      if (!this.dst.write(b)) this.waiting = true
    }
    if (this.head === this.queue.length) {
      this.queue.length = 0
      this.due.length = 0
      this.head = 0
      if (this.closeAfter) { this.host.faultClose(); return }
      if (this.ended) { this.finish(); return }
    }
    if (this.srcPaused && this.held < HOLD_MAX / 2 && !this.waiting) { this.srcPaused = false; this.src.resume() }
  }

  private finish (): void {
    if (this.endSent || this.disposed || this.closeTimer !== null) return
    let delay = 0
    for (const e of this.toxics) {
      if (e.removed || e.toxic.type !== 'slow_close') continue
      delay += e.toxic.attributes.delay as number
    }
    if (delay > 0) {
      this.closeAt = performance.now() + delay
      this.closeTimer = setTimeout(onSlowClose, Math.ceil(delay), this)
      return
    }
    this.endSent = true
    this.dst.end()
  }

  /** slow_close's delay is over. */
  closeNow (): void {
    this.closeTimer = null
    const left = this.closeAt - performance.now()
    if (left > 0) { this.closeTimer = setTimeout(onSlowClose, Math.max(1, Math.ceil(left)), this); return } // the loop's clock ran early
    if (this.endSent || this.disposed) return
    this.endSent = true
    this.dst.end()
  }
}

function onTimer (p: ToxicPipe): void {
  p.drained() // re-checks what is due (a timer can fire a little early on the loop's cached clock)
}

function onSlowClose (p: ToxicPipe): void {
  p.closeNow()
}

function total (bufs: Buffer[]): number {
  let n = 0
  for (const b of bufs) n += b.length
  return n
}

/**
 * A `down` toxic on the endpoint about to be dialled: 'refuse' (the dial fails at once, as
 * ECONNREFUSED) or 'blackhole' (nothing is dialled; the ladder's timeout fires), else null.
 * Called by dial.ts only when the port has toxics.
 */
export function downFor (p: PairBase, b: Backend, faults: FaultSet): 'refuse' | 'blackhole' | null {
  const t = faults.down(b.key, p.fe.ctx.random)
  if (t === null) return null
  faults.applied(t.toxic)
  noteFault(p, t, b.key)
  return t.toxic.attributes.mode === 'blackhole' ? 'blackhole' : 'refuse'
}

/** The 'fault' event, when observed. */
export function noteFault (p: PairBase, t: ActiveToxic, endpoint: string): void {
  const ev = p.fe.ctx.events
  if (!observed(ev, 'fault')) return
  const x = t.toxic
  ev.emit('fault', { id: p.id, service: `${p.rt.namespace}/${p.rt.service}`, port: p.rt.portLabel, protocol: 'TCP', endpoint, toxic: x.name, type: x.type, stream: x.stream })
}
