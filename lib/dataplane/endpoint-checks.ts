import { request } from 'node:http'
import { connect, type Socket } from 'node:net'
import type { Backend } from '../balancer/backend.js'
import { DEFAULTS } from '../defaults.js'
import type { DataPlaneContext } from '../frontend/contract.js'
import { type ActiveChecker, EndpointHealth } from '../frontend/endpoint-health.js'
import { hostPort } from '../frontend/events.js'
import type { ServicePortRuntime } from '../frontend/runtime.js'
import { type HealthCheckSettings, healthCheckOf, type OutlierSettings, outlierSettingsOf, sameHealthCheck } from '../model/endpoint-health.js'

const DEFAULT_OUTLIER: OutlierSettings = {
  consecutiveFailures: DEFAULTS.outlierConsecutiveFailures,
  baseEjectionMs: DEFAULTS.outlierBaseEjectionTimeMs,
  maxEjectionMs: DEFAULTS.outlierMaxEjectionTimeMs,
  maxEjectionPercent: DEFAULTS.outlierMaxEjectionPercent,
}

/** A new endpoint's first check comes within this (jittered), so it joins soon after it passes. */
const FIRST_CHECK_MAX_MS = 1000

/**
 * After each update of a runtime (the data plane's one hook): its outlier settings from the
 * annotations over the flags, and its active checker started, replaced, told of the new
 * endpoint set or stopped, as the service asks. Checks are for TCP ports only.
 */
export function syncEndpointHealth (rt: ServicePortRuntime, ctx: DataPlaneContext): void {
  const a = rt.state.service.annotations
  const outlier = outlierSettingsOf(a, ctx.outlier ?? DEFAULT_OUTLIER)
  let h = rt.health instanceof EndpointHealth ? rt.health : null
  if (h === null) rt.health = (h = new EndpointHealth(rt, ctx, outlier))
  else h.configure(outlier)
  const want = rt.state.port.protocol === 'TCP' ? healthCheckOf(a) : null
  const cur = h.checker instanceof EndpointChecker ? h.checker.settings : null
  if (!sameHealthCheck(cur, want)) {
    h.checker?.stop()
    h.checker = want === null ? null : new EndpointChecker(h, want)
  }
  h.checker?.sync()
  h.refresh()
}

interface CheckState {
  readonly b: Backend
  passes: number
  fails: number
  timer: NodeJS.Timeout | null
  /** The check under way: its socket or request, destroyed on stop. */
  inflight: { destroy: () => void } | null
}

/**
 * Active health checks of one service port (HAProxy's `check inter rise fall`): every endpoint
 * is checked every interval (±10% jitter, the first within a second), off the data path. A TCP
 * check passes when the connect succeeds; an HTTP check when GET path answers 2xx or 3xx,
 * within the timeout. A new endpoint is 'pending' until its first result; an up endpoint goes
 * down after `fall` failures in a row, a down one comes up after `rise` passes in a row.
 */
export class EndpointChecker implements ActiveChecker {
  readonly settings: HealthCheckSettings
  private readonly health: EndpointHealth
  private readonly states = new Map<string, CheckState>()
  private stopped = false

  constructor (health: EndpointHealth, settings: HealthCheckSettings) {
    this.health = health
    this.settings = settings
  }

  sync (): void {
    if (this.stopped) return
    const rt = this.health.rt
    for (const [key, st] of this.states) {
      if (rt.byKey.get(key) !== st.b) { this.end(st); this.states.delete(key) }
    }
    for (const [key, b] of rt.byKey) {
      if (this.states.has(key)) continue
      const st: CheckState = { b, passes: 0, fails: 0, timer: null, inflight: null }
      b.check = 'pending'
      this.states.set(key, st)
      this.schedule(st, this.health.ctx.random() * Math.min(this.settings.intervalMs, FIRST_CHECK_MAX_MS))
    }
  }

  stop (): void {
    this.stopped = true
    for (const st of this.states.values()) { this.end(st); st.b.check = 'none' }
    this.states.clear()
  }

  private end (st: CheckState): void {
    if (st.timer !== null) clearTimeout(st.timer)
    st.timer = null
    st.inflight?.destroy()
    st.inflight = null
  }

  private schedule (st: CheckState, ms: number): void {
    st.timer = setTimeout(() => { st.timer = null; this.run(st) }, Math.max(1, Math.round(ms)))
    st.timer.unref()
  }

  private run (st: CheckState): void {
    if (this.stopped) return
    const s = this.settings
    const b = st.b
    let done = false
    const finish = (ok: boolean, detail: string): void => {
      if (done) return
      done = true
      clearTimeout(timeout)
      st.inflight?.destroy()
      st.inflight = null
      if (this.stopped || this.states.get(b.key) !== st) return
      this.record(st, ok, detail)
      this.schedule(st, s.intervalMs * (0.9 + 0.2 * this.health.ctx.random()))
    }
    const timeout = setTimeout(() => { finish(false, `no answer within ${s.timeoutMs}ms`) }, s.timeoutMs)
    timeout.unref()
    if (s.kind === 'tcp') {
      const sock: Socket = connect({ host: b.ip, port: b.port })
      st.inflight = sock
      sock.once('connect', () => { finish(true, 'TCP connect succeeded') })
      sock.on('error', (err: NodeJS.ErrnoException) => { finish(false, `TCP connect failed: ${err.code ?? err.message}`) })
      return
    }
    const req = request({ host: b.ip, port: b.port, path: s.path, method: 'GET', agent: false, headers: { host: hostPort(b.ip, b.port), 'user-agent': 'svcproxy-health-check' } })
    st.inflight = req
    req.once('response', (res) => {
      res.on('error', ignore)
      res.resume()
      const code = res.statusCode ?? 0
      finish(code >= 200 && code < 400, `HTTP ${code} from GET ${s.path}`)
    })
    req.on('error', (err: NodeJS.ErrnoException) => { finish(false, `GET ${s.path} failed: ${err.code ?? err.message}`) })
    req.end()
  }

  private record (st: CheckState, ok: boolean, detail: string): void {
    const rt = this.health.rt
    const b = st.b
    const { rise, fall } = this.settings
    let changed = false
    if (ok) {
      rt.checksPassed++
      st.fails = 0
      st.passes++
      if (b.check === 'pending' || (b.check === 'down' && st.passes >= rise)) { b.check = 'up'; changed = true }
    } else {
      rt.checksFailed++
      st.passes = 0
      st.fails++
      if (b.check === 'pending' || (b.check === 'up' && st.fails >= fall)) { b.check = 'down'; changed = true }
    }
    if (changed) this.health.checkChanged(b, detail)
  }
}

function ignore (): void {}
