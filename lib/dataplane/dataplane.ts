import type { Algorithm } from '../balancer/balancer.js'
import type { BindFailure } from '../errors.js'
import type { Service } from '../model/types.js'
import type { ServicePortState, Table } from '../table/table.js'
import { SliceClock } from '../util/slices.js'
import { type DataPlaneContext, type Frontend, type FrontendSpec, frontendKey } from '../frontend/contract.js'
import { HealthCheckFrontend } from './health-check.js'
import { syncEndpointHealth } from './endpoint-checks.js'
import { FD_PROBE_INTERVAL_MS, IdleSweeper, probeDescriptors } from '../frontend/limits.js'
import { ServicePortRuntime } from '../frontend/runtime.js'
import { emitEndpointsChanged } from '../frontend/endpoints-event.js'
import { TcpFrontend } from '../tcp/frontend.js'
import { UdpFrontend } from '../udp/frontend.js'

function createFrontend (spec: FrontendSpec, rt: ServicePortRuntime, ctx: DataPlaneContext): Frontend {
  if (spec.kind === 'healthCheck') return new HealthCheckFrontend(spec, rt, ctx)
  return spec.protocol === 'UDP' ? new UdpFrontend(spec, rt, ctx) : new TcpFrontend(spec, rt, ctx)
}

/** Where service addresses come from when they are not local already (lib/host/vip-interface.ts). */
export interface VipHolder {
  prepare (ips: Iterable<string>): Promise<void>
  acquire (ips: Iterable<string>): Promise<void>
  release (ips: Iterable<string>): Promise<void>
  settle (ips: Iterable<string>): Promise<void>
  retry (ip: string): Promise<void>
}

/** Frontend kinds bound on a service's own address (a VIP), not on a node address. */
function onVip (spec: FrontendSpec): boolean {
  return spec.kind === 'clusterIP' || spec.kind === 'externalIP' || spec.kind === 'loadBalancer'
}

export interface DataPlaneOptions {
  ctx: DataPlaneContext
  algorithm: Algorithm
  hostname: string
  /** Addresses NodePorts listen on (already resolved from --nodeport-addresses / --bind-address). */
  nodePortHosts: () => string[]
  /**
   * The backoff timer says failed listeners are due for a retry. The proxy runs retryFailed()
   * in its write queue (a retry must not interleave with a sync); default: at once.
   */
  retryDue?: () => void
}

/** Listeners bound together within a sync's slice (with --vip-interface: one `ip` run per group). */
const BIND_GROUP = 32

/** Failed binds are retried on their own: first after about 1 s, doubling up to 30 s, each jittered by ±25%. */
export const BIND_RETRY_MIN_MS = 1000
export const BIND_RETRY_MAX_MS = 30_000

/** A listener in a failure episode: from its first failed bind until one succeeds or it is removed. */
interface FailedBind {
  /** The frontend whose bind failed last (closed; a retry binds a fresh one). */
  fe: Frontend
  /** Retries that failed too (logged at debug only). */
  retries: number
}

/**
 * Turns table state into sockets. Per service: one runtime per port, one frontend per address the
 * port is exposed on. A sync touches only the services it is told about, and a frontend whose
 * key and runtime are unchanged keeps its socket and its established connections.
 */
export class DataPlane {
  readonly runtimes = new Map<string, ServicePortRuntime>()
  readonly frontends = new Map<string, Frontend>()
  private readonly runtimesBySvc = new Map<string, Set<string>>()
  /** Per service: open TCP connections over all its ports (svcproxy.io/max-connections counts these). */
  private readonly serviceConnections = new Map<string, { active: number }>()
  private readonly frontendsBySvc = new Map<string, Set<string>>()
  /** Frontends no longer accepting whose connections may still be finishing. */
  private readonly retired = new Set<Frontend>()
  /** Listeners whose socket could not bind, by key: retried with backoff, at every sync and on retryFailed(). */
  private readonly failed = new Map<string, FailedBind>()
  private retryTimer: NodeJS.Timeout | null = null
  private retryDelayMs = BIND_RETRY_MIN_MS
  /** Failure episodes since start (svcproxy_bind_failures_total): a listener failing again on retry is not counted again. */
  bindFailures = 0
  private readonly opts: DataPlaneOptions
  private closed = false
  /** --vip-interface: addresses are added before their first frontend binds, removed after their last goes. */
  vips: VipHolder | null = null
  /** --tcp-idle-timeout: one coarse timer for every TCP connection of the proxy. */
  private readonly idle: IdleSweeper | null
  /** Out-of-descriptors detection (limits.ts): one open/close per second, unref'd. */
  private readonly fdProbe: NodeJS.Timeout

  constructor (opts: DataPlaneOptions) {
    this.opts = opts
    this.idle = opts.ctx.tcpIdleTimeoutMs > 0 ? new IdleSweeper(opts.ctx.tcpIdleTimeoutMs, (ticks) => { this.sweepIdle(ticks) }) : null
    this.fdProbe = setInterval(probeDescriptors, FD_PROBE_INTERVAL_MS, opts.ctx.limits, opts.ctx.logger)
    this.fdProbe.unref()
  }

  private sweepIdle (ticks: number): void {
    for (const fe of this.frontends.values()) if (fe instanceof TcpFrontend) fe.sweepIdle(ticks)
    for (const fe of this.retired) if (fe instanceof TcpFrontend) fe.sweepIdle(ticks)
  }

  get ctx (): DataPlaneContext {
    return this.opts.ctx
  }

  async sync (table: Table, changed: Iterable<string>): Promise<void> {
    if (this.closed) return
    const affected = [...changed] // walked twice with --vip-interface
    const created: Frontend[] = []
    const gone: string[] = []
    // In slices, so a reload of 10,000s of services never holds the loop for long: each service
    // switches whole (its runtimes and frontends in one step), and what a slice created is bound
    // before the loop is given back, so a replaced listener is down for a bind, not for the sync.
    // Binds (the costlier part) go in small groups, so the slice's clock counts them.
    const clock = new SliceClock()
    const inError = [...this.failed.values()] // before this sync adds its own failures
    let bound = 0
    // The sync's new service addresses in one batch up front: one `ip` for a reload of 10,000
    // services, not one per slice.
    const vipHosts = this.vips === null ? [] : this.vipHostsOf(table, affected)
    if (this.vips !== null) await this.vips.prepare(vipHosts)
    for (const svcKey of affected) {
      this.syncService(svcKey, table.statesOf(svcKey), created, gone)
      if (created.length - bound >= BIND_GROUP || clock.due()) bound = await this.openCreated(created, bound)
      if (!clock.due()) continue
      await clock.pause()
      if (this.closed) return
    }
    await this.openCreated(created, bound)
    const vips = this.vips
    const opening: Array<Promise<void>> = []
    // A port that could not bind is also retried on every change (kube-proxy retried on each sync).
    // Only the failed ones are visited, so a change costs O(changed), not O(all listeners).
    for (const f of inError) opening.push(this.reopen(f.fe))
    await Promise.all(opening)
    if (vips !== null && gone.length > 0) await vips.release(gone)
    if (vips !== null) await vips.settle(vipHosts)
    this.scheduleRetry()
  }

  /** The service addresses (clusterIP, externalIPs, LB IPs) the affected services want. */
  private vipHostsOf (table: Table, affected: Iterable<string>): string[] {
    const out: string[] = []
    for (const svcKey of affected) {
      for (const st of table.statesOf(svcKey)) for (const spec of this.frontendSpecs(st)) if (onVip(spec)) out.push(spec.host)
    }
    return out
  }

  /** Binds the frontends created since `from` (their VIPs first); returns how many are bound or failed now. */
  private async openCreated (created: Frontend[], from: number): Promise<number> {
    const fresh = created.slice(from)
    if (this.vips !== null) await this.vips.acquire(fresh.filter((fe) => onVip(fe.spec)).map((fe) => fe.spec.host))
    // A bind of an IP literal completes in the same tick (lookup and 'listening' are nextTicks).
    await Promise.all(fresh.map(async (fe) => { await fe.open(); this.reportBind(fe) }))
    return created.length
  }

  /** Listeners in error now. */
  get inError (): number {
    return this.failed.size
  }

  /**
   * Binds every failed listener again (the backoff timer, a resync, SIGHUP). Costs nothing when
   * none failed. The caller serializes it with sync() (ServiceProxy.retryFailedListeners).
   */
  async retryFailed (): Promise<void> {
    if (this.closed || this.failed.size === 0) return
    await Promise.all([...this.failed.values()].map(async (f) => { await this.reopen(f.fe) }))
    this.scheduleRetry()
  }

  /** Every listener in error now, sorted by service. */
  listenersInError (): BindFailure[] {
    return [...this.failed.values()].map((f) => describeFailure(f.fe)).sort(byService)
  }

  /** The listeners of these services that are in error (what a write reports in ApplyResult.failed). */
  failuresOf (svcKeys: Iterable<string>): BindFailure[] {
    const out: BindFailure[] = []
    for (const svc of svcKeys) {
      for (const key of this.frontendsBySvc.get(svc) ?? []) {
        const f = this.failed.get(key)
        if (f !== undefined) out.push(describeFailure(f.fe))
      }
    }
    return out.sort(byService)
  }

  /** One timer for the whole data plane, unref'd: armed while any listener is in error. */
  private scheduleRetry (): void {
    if (this.failed.size === 0 || this.closed) {
      this.retryDelayMs = BIND_RETRY_MIN_MS
      if (this.retryTimer !== null) clearTimeout(this.retryTimer)
      this.retryTimer = null
      return
    }
    if (this.retryTimer !== null) return
    const ms = Math.round(this.retryDelayMs * (0.75 + Math.random() * 0.5))
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, BIND_RETRY_MAX_MS)
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      if (this.opts.retryDue !== undefined) this.opts.retryDue()
      else void this.retryFailed()
    }, ms)
    this.retryTimer.unref()
  }

  /** Updates one service's runtimes and frontends; new frontends go to `created` (not yet open), the VIPs of removed ones to `gone`. */
  private syncService (svcKey: string, states: ServicePortState[], created: Frontend[], gone: string[]): void {
    const { ctx, algorithm, hostname } = this.opts
    const oldIds = this.runtimesBySvc.get(svcKey) ?? new Set<string>()
    const newIds = new Set<string>()
    const wanted = new Map<string, FrontendSpec>()
    let conns = this.serviceConnections.get(svcKey)
    if (conns === undefined && states.length > 0) this.serviceConnections.set(svcKey, (conns = { active: 0 }))
    else if (states.length === 0) this.serviceConnections.delete(svcKey) // open pairs keep their object
    for (const st of states) {
      newIds.add(st.id)
      let rt = this.runtimes.get(st.id)
      if (rt === undefined) {
        rt = new ServicePortRuntime(st, algorithm, hostname)
        rt.balancer.random = ctx.random // createProxy({ seed })
        if (conns !== undefined) rt.serviceConnections = conns
        this.runtimes.set(st.id, rt)
      } else {
        const gone = rt.update(st, algorithm)
        if (gone.length > 0) {
          const keys = new Set(gone.map((b) => b.key))
          for (const fe of this.frontends.values()) if (fe.rt === rt) fe.endpointsRemoved(keys)
        }
      }
      if (rt.servingChanged) emitEndpointsChanged(ctx.events, rt)
      syncEndpointHealth(rt, ctx) // outlier settings, active checks (endpoint-checks.ts)
      rt.faults = ctx.faultsFor?.(rt) ?? null // toxics survive a re-created runtime (api/faults.ts)
      for (const spec of this.frontendSpecs(st)) if (!wanted.has(spec.key)) wanted.set(spec.key, spec)
    }

    const oldKeys = this.frontendsBySvc.get(svcKey) ?? new Set<string>()
    const keptKeys = new Set<string>()
    for (const key of oldKeys) {
      const fe = this.frontends.get(key)
      if (fe === undefined) continue
      const spec = wanted.get(key)
      if (spec !== undefined && spec.runtimeId === fe.spec.runtimeId && spec.local === fe.spec.local && spec.kind === fe.spec.kind) {
        keptKeys.add(key)
        continue
      }
      this.retire(fe)
      this.frontends.delete(key)
      if (onVip(fe.spec)) gone.push(fe.spec.host)
    }
    for (const [key, spec] of wanted) {
      if (keptKeys.has(key)) continue
      const rt = this.runtimes.get(spec.runtimeId) as ServicePortRuntime
      if (this.frontends.has(key)) {
        // The address:port is held by another service: report it on this one and move on.
        ctx.logger.error({ service: rt.id, address: `${spec.host}:${spec.port}`, protocol: spec.protocol }, 'port conflict: address already served by another service')
        continue
      }
      const fe = createFrontend(spec, rt, ctx)
      this.frontends.set(key, fe)
      keptKeys.add(key)
      created.push(fe)
    }
    if (keptKeys.size > 0) this.frontendsBySvc.set(svcKey, keptKeys)
    else this.frontendsBySvc.delete(svcKey)

    for (const id of oldIds) if (!newIds.has(id)) { const r = this.runtimes.get(id); r?.close(); if (r !== undefined) emitEndpointsChanged(ctx.events, r, true); this.runtimes.delete(id) }
    if (newIds.size > 0) this.runtimesBySvc.set(svcKey, newIds)
    else this.runtimesBySvc.delete(svcKey)
  }

  private retire (fe: Frontend): void {
    // A listener removed or replaced while in error ends its episode (a replacement starts afresh).
    if (this.failed.get(fe.spec.key)?.fe === fe) this.failed.delete(fe.spec.key)
    fe.close(false)
    for (const r of this.retired) if (r.openCount() === 0) this.retired.delete(r)
    if (fe.openCount() > 0) this.retired.add(fe)
  }

  private async reopen (fe: Frontend): Promise<void> {
    const key = fe.spec.key
    if (this.frontends.get(key) !== fe) {
      if (this.failed.get(key)?.fe === fe) this.failed.delete(key)
      return
    }
    // Its address may be what failed (--vip-interface could not add it): try that again first.
    if (this.vips !== null && onVip(fe.spec)) {
      await this.vips.retry(fe.spec.host)
      if (this.frontends.get(key) !== fe) return // a sync replaced it meanwhile
    }
    fe.close(false)
    const next = createFrontend(fe.spec, fe.rt, this.opts.ctx)
    this.frontends.set(key, next)
    await next.open()
    this.reportBind(next)
  }

  /**
   * Logs a bind once per episode: the first failure (error, counted), the recovery (info);
   * failed retries in between at debug only.
   */
  private reportBind (fe: Frontend): void {
    const log = this.opts.ctx.logger
    const where = { service: fe.rt.id, protocol: fe.spec.protocol, address: `${fe.spec.host}:${fe.spec.port}`, kind: fe.spec.kind }
    const key = fe.spec.key
    const episode = this.failed.get(key)
    if (fe.state === 'error') {
      if (episode === undefined) {
        this.failed.set(key, { fe, retries: 0 })
        this.bindFailures++
        log.error({ ...where, err: fe.error }, 'cannot listen; retrying with backoff')
      } else {
        episode.fe = fe
        episode.retries++
        log.debug({ ...where, err: fe.error, retries: episode.retries }, 'still cannot listen')
      }
    } else if (fe.state === 'listening') {
      if (episode !== undefined) {
        this.failed.delete(key)
        log.info({ ...where, boundPort: fe.boundPort, retries: episode.retries + 1 }, 'listening again after failing to bind')
      } else log.info({ ...where, boundPort: fe.boundPort }, 'listening')
    }
  }

  /** Every address a service port is exposed on, with the traffic policy that applies there. */
  frontendSpecs (st: ServicePortState): FrontendSpec[] {
    const svc: Service = st.service
    if (svc.type === 'ExternalName' || svc.clusterIP === 'None' || svc.clusterIP === '') return []
    const p = st.port
    const out: FrontendSpec[] = []
    const push = (host: string, port: number, kind: FrontendSpec['kind'], local: boolean): void => {
      out.push({ key: frontendKey(p.protocol, host, port), protocol: p.protocol, host, port, kind, local, runtimeId: st.id })
    }
    push(svc.clusterIP, p.port, 'clusterIP', svc.internalTrafficPolicy === 'Local')
    const extLocal = svc.externalTrafficPolicy === 'Local'
    for (const ip of svc.externalIPs) push(ip, p.port, 'externalIP', extLocal)
    if (svc.type === 'LoadBalancer') for (const ip of svc.loadBalancerIPs) push(ip, p.port, 'loadBalancer', extLocal)
    if (p.nodePort !== 0 && (svc.type === 'NodePort' || svc.type === 'LoadBalancer')) {
      for (const host of this.opts.nodePortHosts()) push(host, p.nodePort, 'nodePort', extLocal)
    }
    // Once per service (every port lists it; the sync keeps the first of a key), always HTTP.
    if (svc.healthCheckNodePort !== 0) {
      for (const host of this.opts.nodePortHosts()) {
        out.push({ key: frontendKey('TCP', host, svc.healthCheckNodePort), protocol: 'TCP', host, port: svc.healthCheckNodePort, kind: 'healthCheck', local: true, runtimeId: st.id })
      }
    }
    return out
  }

  /** Stops accepting everywhere; established connections continue (graceful drain). */
  stopAccepting (): void {
    for (const fe of this.frontends.values()) fe.close(false)
  }

  /** Connections and sessions still open anywhere, retired frontends included. */
  openCount (): number {
    let n = 0
    for (const fe of this.frontends.values()) n += fe.openCount()
    for (const fe of this.retired) n += fe.openCount()
    return n
  }

  /**
   * Closes every socket, established connections included, and resolves once they are all
   * gone: a handle still closing when the process exits can stall Node's exit.
   */
  async close (): Promise<void> {
    this.closed = true
    this.scheduleRetry() // clears the timer
    this.idle?.stop()
    clearInterval(this.fdProbe)
    const all = [...this.frontends.values(), ...this.retired]
    for (const fe of all) fe.close(true)
    for (const rt of this.runtimes.values()) rt.close() // ejection timers, health checks
    const deadline = Date.now() + 2000
    // Handles close in the loop's next close phase: a few turns first (a harness closes in µs, not 5 ms), then a coarse poll.
    for (let turn = 0; all.some((fe) => fe.openCount() > 0 || !fe.isClosed()) && Date.now() < deadline; turn++) {
      await new Promise((resolve) => { if (turn < 20) setImmediate(resolve); else setTimeout(resolve, 5) })
    }
    this.retired.clear()
  }

}

function describeFailure (fe: Frontend): BindFailure {
  const host = fe.spec.host.includes(':') ? `[${fe.spec.host}]` : fe.spec.host
  return { service: `${fe.rt.namespace}/${fe.rt.service}`, port: fe.rt.portLabel, protocol: fe.spec.protocol, kind: fe.spec.kind, address: `${host}:${fe.spec.port}`, error: fe.error }
}

function byService (a: BindFailure, b: BindFailure): number {
  const x = `${a.service}:${a.port} ${a.address}`
  const y = `${b.service}:${b.port} ${b.address}`
  return x < y ? -1 : x > y ? 1 : 0
}
