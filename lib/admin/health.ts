import type { Logger } from 'pino'
import { type BindFailure, formatBindFailure } from '../errors.js'
import type { SourceHealth } from '../sources/health.js'

/** Go's zero time as kube-proxy prints it for "never updated". */
const ZERO_TIME = '0001-01-01T00:00:00Z'

export interface HealthzBody {
  lastUpdated: string
  currentTime: string
}

export interface Answer<B> {
  status: 200 | 503
  body: B
}

function rfc3339 (ms: number): string {
  return ms > 0 ? new Date(ms).toISOString() : ZERO_TIME
}

/**
 * kube-proxy's /healthz: 200 with `lastUpdated`/`currentTime` while the served table is fresh,
 * 503 (same body) once the source says it may be out of date, or while the event loop is blocked
 * (`loopBlocked`, from LoopWatchdog): a process that cannot turn its loop applies no update and
 * serves no connection. As in kube-proxy, a proxy still starting up is healthy: "not yet
 * synced" is /readyz's business.
 */
export function healthz (h: SourceHealth, now = Date.now(), loopBlocked = false): Answer<HealthzBody> {
  return { status: h.stale || loopBlocked ? 503 : 200, body: { lastUpdated: rfc3339(h.lastSyncedAt), currentTime: rfc3339(now) } }
}

/**
 * /readyz: 503 until the source's first full sync, while any listener is in error (it could not
 * bind and is being retried: part of the desired state is not served), and once shutdown has
 * begun. The body says why, one listener a line.
 */
export function readyz (h: SourceHealth, shuttingDown: boolean, inError: readonly BindFailure[] = []): Answer<string> {
  if (shuttingDown) return { status: 503, body: 'not ready: shutting down\n' }
  if (!h.synced) return { status: 503, body: `not ready: ${h.kind} source not synced yet\n` }
  if (inError.length > 0) {
    const head = inError.length === 1 ? '1 listener in error' : `${inError.length} listeners in error`
    return { status: 503, body: `not ready: ${head} (retried with backoff)\n${inError.map(formatBindFailure).join('\n')}\n` }
  }
  return { status: 200, body: 'ok\n' }
}

/** How often the watchdog's timer expects to run; how late it runs is the loop's delay. */
export const WATCHDOG_TICK_MS = 100

/**
 * The event-loop watchdog behind /healthz (--healthz-max-loop-delay): a timer due every 100 ms
 * measures how late it runs. The loop counts as blocked while the delay in progress (a request
 * answered right after a block may run before the timer does) or the last delay measured over
 * the limit, for as long as the limit after it, exceeds the limit: a probe queued behind a block
 * is answered 503 whichever callback the loop runs first, and the loop must run normally for a
 * while before /healthz turns 200 again. Logged once per block.
 */
export class LoopWatchdog {
  private last = performance.now()
  private lastBlockMs = 0
  private reportUntil = 0
  private readonly timer: NodeJS.Timeout

  constructor (readonly maxDelayMs: number, private readonly log: Logger) {
    this.timer = setInterval(() => { this.tick() }, WATCHDOG_TICK_MS)
    this.timer.unref()
  }

  private tick (): void {
    const now = performance.now()
    const late = now - this.last - WATCHDOG_TICK_MS
    this.last = now
    if (late <= this.maxDelayMs) return
    if (now >= this.reportUntil) this.log.warn({ delayMs: Math.round(late), maxDelayMs: this.maxDelayMs }, 'event loop was blocked beyond --healthz-max-loop-delay: /healthz answers 503')
    this.lastBlockMs = late
    this.reportUntil = now + this.maxDelayMs
  }

  /** The loop delay that counts now, in ms. */
  delayMs (now = performance.now()): number {
    const inProgress = now - this.last - WATCHDOG_TICK_MS
    return Math.max(0, inProgress, now < this.reportUntil ? this.lastBlockMs : 0)
  }

  blocked (now = performance.now()): boolean {
    return this.delayMs(now) > this.maxDelayMs
  }

  close (): void {
    clearInterval(this.timer)
  }
}
