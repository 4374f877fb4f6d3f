/**
 * Per-second rates from the data path's plain counters, computed when someone asks (/v1/stats),
 * never on a timer: each request reads the counters it serializes anyway, and once at least
 * MIN_WINDOW_MS has passed since the last window closed, the deltas over that window become
 * the rates every caller sees until the next one closes. Two dashboards polling at once share
 * a window instead of halving it.
 */
export const MIN_WINDOW_MS = 900

/** What one series (a service port or an endpoint) counts; all monotonic while it exists. */
export interface Counted { accepted: number, bytesUp: number, bytesDown: number }

export interface Rate {
  /** Connections (TCP) or sessions (UDP) accepted per second. */
  connPerSec: number
  /** Bytes client -> endpoint per second. */
  bytesUpPerSec: number
  /** Bytes endpoint -> client per second. */
  bytesDownPerSec: number
}

/** Three decimals: enough for "0.2 connections/s", short in JSON. */
function round (x: number): number {
  return Math.round(x * 1000) / 1000
}

const ZERO: Rate = Object.freeze({ connPerSec: 0, bytesUpPerSec: 0, bytesDownPerSec: 0 })

interface Series extends Rate {
  accepted: number
  bytesUp: number
  bytesDown: number
  /** The window this series was last seen in: series not seen when a window closes are dropped. */
  window: number
}

export class RateWindow {
  private readonly series = new Map<string, Series>()
  private openedAt = -1
  private window = 0
  private rolling = false
  /** Length of the last closed window (ms); 0 before the second request. */
  lastWindowMs = 0

  constructor (private readonly now: () => number = () => performance.now()) {}

  /**
   * Call once per request, before rate(): decides whether this request closes the window.
   * The first request only opens one (every rate is 0 until the second).
   */
  begin (): void {
    const t = this.now()
    this.rolling = this.openedAt >= 0 && t - this.openedAt >= MIN_WINDOW_MS
    if (this.rolling) this.lastWindowMs = t - this.openedAt
    if (this.rolling || this.openedAt < 0) {
      this.openedAt = t
      this.window++
    }
  }

  /** The rate of series `key` whose counters are `c` now. */
  rate (key: string, c: Counted): Rate {
    let s = this.series.get(key)
    if (s === undefined) {
      // New since the last request: its counters started at zero inside the window (a new
      // endpoint or port), except on the very first request, when nothing is known yet.
      s = { accepted: 0, bytesUp: 0, bytesDown: 0, window: 0, ...ZERO }
      if (this.window === 1) Object.assign(s, { accepted: c.accepted, bytesUp: c.bytesUp, bytesDown: c.bytesDown })
      this.series.set(key, s)
    }
    if (this.rolling && s.window !== this.window) {
      const per = 1000 / this.lastWindowMs
      s.connPerSec = round(delta(c.accepted, s.accepted) * per)
      s.bytesUpPerSec = round(delta(c.bytesUp, s.bytesUp) * per)
      s.bytesDownPerSec = round(delta(c.bytesDown, s.bytesDown) * per)
      s.accepted = c.accepted
      s.bytesUp = c.bytesUp
      s.bytesDown = c.bytesDown
    }
    s.window = this.window
    return s
  }

  /** Call after the request read every series: forgets series that are gone. */
  end (): void {
    if (!this.rolling) return
    for (const [k, s] of this.series) if (s.window !== this.window) this.series.delete(k)
  }
}

/** A counter that went backwards belongs to a new object under the same key (an endpoint removed and re-added): count from zero. */
function delta (now: number, before: number): number {
  return now >= before ? now - before : now
}
