import type { Backend } from '../balancer/backend.js'
import type { OutlierSettings } from '../model/endpoint-health.js'
import { formatDuration } from '../util/duration.js'
import type { DataPlaneContext } from './contract.js'
import { emitEndpointsChanged } from './endpoints-event.js'
import { observed } from './events.js'
import type { PortHealth, ServicePortRuntime } from './runtime.js'

/** What the active checker (dataplane/endpoint-checks.ts) offers the runtime: stopped with it. */
export interface ActiveChecker {
  /** The endpoint set changed: check the new ones, forget the gone ones. */
  sync (): void
  stop (): void
}

/**
 * One service port's endpoint health: outlier ejection (passive, Envoy's model) and the state
 * active checks report. The data path only counts (pair.ts, session.ts: `consecutiveFailures`,
 * compared with `rt.ejectAfter`); this class acts on what was counted, off the data path: it
 * ejects, returns on time (one unref'd timer per port, armed only while an endpoint is
 * ejected), recomputes the balancer's set (rt.refilter) and tells (log, event, metrics).
 */
export class EndpointHealth implements PortHealth {
  readonly rt: ServicePortRuntime
  readonly ctx: DataPlaneContext
  outlier: OutlierSettings
  checker: ActiveChecker | null = null
  private timer: NodeJS.Timeout | null = null
  private timerAt = 0

  constructor (rt: ServicePortRuntime, ctx: DataPlaneContext, outlier: OutlierSettings) {
    this.rt = rt
    this.ctx = ctx
    this.outlier = outlier
    this.configure(outlier)
  }

  /** New settings (an annotation or the flags changed). Off: every ejected endpoint returns now. */
  configure (o: OutlierSettings): void {
    this.outlier = o
    this.rt.ejectAfter = o.consecutiveFailures > 0 ? o.consecutiveFailures : Infinity
    if (o.consecutiveFailures === 0) this.returnAll()
  }

  /** How many of the port's endpoints may be ejected at once: at least one, never all (Envoy's max_ejection_percent). */
  maxEjected (): number {
    const n = this.rt.endpoints.length
    if (this.outlier.maxEjectionPercent === 0 || n < 2) return 0
    return Math.min(n - 1, Math.max(1, Math.floor(n * this.outlier.maxEjectionPercent / 100)))
  }

  ejectedCount (): number {
    let n = 0
    for (const b of this.rt.byKey.values()) if (b.ejected) n++
    return n
  }

  /** `b` failed its dials `consecutiveFailures` times in a row: eject it, unless the share is used up. */
  failedInARow (b: Backend, error: string): void {
    const rt = this.rt
    if (b.ejected || rt.byKey.get(b.key) !== b || this.outlier.consecutiveFailures === 0) return
    if (this.ejectedCount() >= this.maxEjected()) return // stays in: ejection never leaves a port dark
    const o = this.outlier
    const now = Date.now()
    // The multiplier decays by one per base ejection time the endpoint stayed healthy since it returned.
    if (b.returnedAt > 0) b.ejections = Math.max(0, b.ejections - Math.floor((now - b.returnedAt) / o.baseEjectionMs))
    b.ejections++
    b.ejectionsTotal++
    rt.ejectionsTotal++
    const ms = Math.min(o.baseEjectionMs * b.ejections, o.maxEjectionMs)
    b.ejected = true
    b.ejectedUntil = now + ms
    const failures = b.consecutiveFailures
    this.refresh()
    this.arm(b.ejectedUntil)
    const detail = `${failures} dial failure${failures === 1 ? '' : 's'} in a row (last: ${error})`
    this.ctx.logger.warn({ service: rt.id, endpoint: b.key, failures, ejectedForMs: ms, ejections: b.ejections, error },
      `endpoint ejected for ${formatDuration(ms)}: ${detail}; it gets no new connections until then. Check the pod; if Kubernetes still calls it ready, its readiness probe misses this. Tune with svcproxy.io/outlier-* annotations or --outlier-* flags (docs/health.md)`)
    this.emit(b, 'ejected', detail)
  }

  /** An active check moved `b` between up and down. */
  checkChanged (b: Backend, detail: string): void {
    const down = b.check === 'down'
    this.refresh()
    const log = this.ctx.logger
    if (down) log.warn({ service: this.rt.id, endpoint: b.key, detail }, `endpoint health check failed (${detail}): no new connections until it passes again (svcproxy.io/health-check, docs/health.md)`)
    else log.info({ service: this.rt.id, endpoint: b.key, detail }, 'endpoint health check passes: taking connections')
    this.emit(b, down ? 'check-down' : 'check-up', detail)
  }

  /** Stops the timer and the checker; the runtime is gone. */
  close (): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.checker?.stop()
    this.checker = null
  }

  private returnAll (): void {
    let any = false
    for (const b of this.rt.byKey.values()) if (b.ejected) { this.returnOne(b, Date.now()); any = true }
    if (any) this.refresh()
  }

  private returnOne (b: Backend, now: number): void {
    b.ejected = false
    b.ejectedUntil = 0
    b.returnedAt = now
    // Probation: one more failure ejects it again (for longer); one success clears it.
    b.consecutiveFailures = Number.isFinite(this.rt.ejectAfter) ? this.rt.ejectAfter - 1 : 0
    this.ctx.logger.info({ service: this.rt.id, endpoint: b.key, ejections: b.ejections }, 'ejected endpoint returns, on probation: one failed dial ejects it again')
    this.emit(b, 'returned', 'ejection time over; on probation')
  }

  private arm (at: number): void {
    if (this.timer !== null && this.timerAt <= at) return
    if (this.timer !== null) clearTimeout(this.timer)
    this.timerAt = at
    this.timer = setTimeout(onEjectionTimer, Math.max(1, at - Date.now()), this)
    this.timer.unref()
  }

  /** The ejection timer: returns every endpoint whose time is over, re-arms for the next. */
  sweep (): void {
    this.timer = null
    const now = Date.now()
    let next = Infinity
    let returned = false
    for (const b of this.rt.byKey.values()) {
      if (!b.ejected) continue
      if (b.ejectedUntil <= now + 1) { this.returnOne(b, now); returned = true } else next = Math.min(next, b.ejectedUntil)
    }
    if (returned) this.refresh()
    if (next !== Infinity) this.arm(next)
  }

  /** Recomputes the balancer's set; tells 'endpoints' listeners when it changed. */
  refresh (): void {
    const rt = this.rt
    if (rt.refilter()) emitEndpointsChanged(this.ctx.events, rt)
  }

  private emit (b: Backend, change: 'ejected' | 'returned' | 'check-down' | 'check-up', detail: string): void {
    const ev = this.ctx.events
    if (observed(ev, 'endpointHealth')) ev.emit('endpointHealth', { service: `${this.rt.namespace}/${this.rt.service}`, port: this.rt.portLabel, endpoint: b.key, change, detail })
  }
}

function onEjectionTimer (h: EndpointHealth): void {
  h.sweep()
}
