import { EventEmitter } from 'node:events'
import { networkInterfaces } from 'node:os'
import type { Logger } from 'pino'
import { Backend } from '../balancer/backend.js'
import type { Algorithm } from '../balancer/balancer.js'
import { BindError, type BindFailure, ClosedError, NotFoundError } from '../errors.js'
import { parseObjects } from '../model/document.js'
import type { KubeObject, ObjectKind } from '../model/types.js'
import { type ProxyOptions, resolveOptions } from './options.js'
import { SyncStats } from './sync-stats.js'
import { FaultRegistry } from './faults.js'
import type { ScopedToxic } from '../faults/toxic.js'
import { DataPlane } from '../dataplane/dataplane.js'
import type { ProxyEventMap } from '../frontend/events.js'
import type { FrontendKind, FrontendState } from '../frontend/contract.js'
import { effectiveMode } from '../frontend/proxy-protocol.js'
import { type ProxyProtocolMode, proxyProtocolOf } from '../model/annotations.js'
import { ConnectionLimits } from '../frontend/limits.js'
import { type Engine, engineFor } from '../internals/uv-tcp.js'
import { cidrContains, parseCidr } from '../model/ip.js'
import { type ObjectRef, parseRef } from '../table/refs.js'
import { Table } from '../table/table.js'
import { VipInterface } from '../host/vip-interface.js'
import { seededRandom } from '../util/random.js'
import { EventWaiters, type EventsOptions, type ProxyEvent, type WaitForOptions } from './wait-for.js'
import { type ExplainOptions, type Explanation, explain } from './explain.js'

export interface ApplyResult {
  /** Table revision after the write. */
  revision: number
  /** Skipped objects of other kinds, one line each. */
  warnings: string[]
  /** `namespace/name` of the services whose serving state was recomputed. */
  changed: string[]
  /**
   * Listeners of the changed services that could not bind (EADDRINUSE, EADDRNOTAVAIL, ...).
   * The change is applied all the same; they are retried with backoff. With `strictBind` the
   * write rejects with BindError instead.
   */
  failed: BindFailure[]
}

export interface FrontendStatus {
  kind: FrontendKind
  protocol: 'TCP' | 'UDP'
  address: string
  port: number
  boundPort: number
  state: FrontendState
  error: string
}

export interface EndpointStatus {
  endpoint: string
  nodeName: string
  ready: boolean
  active: number
  accepted: number
  dialFailures: number
  bytesUp: number
  bytesDown: number
  /** Takes new connections: not ejected, and its active check (if any) passes (docs/health.md). */
  eligible: boolean
  /** Outlier ejection: out until `ejectedUntil` (ms since epoch, 0 when not ejected); `ejections` in all; dial failures in a row now. */
  ejected: boolean
  ejectedUntil: number
  ejections: number
  consecutiveFailures: number
  /** Active health check: 'none' (the service asks for none), 'pending', 'up' or 'down'. */
  check: 'none' | 'pending' | 'up' | 'down'
}

export interface ServicePortStatus {
  id: string
  namespace: string
  name: string
  port: string
  protocol: 'TCP' | 'UDP'
  clusterIP: string
  type: string
  algorithm: Algorithm
  sessionAffinity: 'None' | 'ClientIP'
  /** The PROXY protocol header its endpoints get (annotation svcproxy.io/proxy-protocol, else --proxy-protocol; UDP: v2 or none). */
  proxyProtocol: ProxyProtocolMode
  frontends: FrontendStatus[]
  endpoints: EndpointStatus[]
  active: number
  accepted: number
  dialFailures: number
  bytesUp: number
  bytesDown: number
  /** Toxics on this port (proxy.faults): the service's, the port's and its endpoints'. */
  faults: ScopedToxic[]
}

/**
 * An embedded svcproxy: a table of desired state and the sockets serving it.
 * Writes are serialized; each resolves once the data path serves the new state.
 */
export class ServiceProxy extends EventEmitter<ProxyEventMap> {
  readonly table: Table
  readonly dataplane: DataPlane
  readonly logger: Logger
  readonly hostname: string
  /** Sync duration histogram, last sync time and errors; /metrics reads it at scrape time. */
  readonly syncStats = new SyncStats()
  /** Connection limits and counters (--max-connections, rejections, accept failures). */
  readonly limits: ConnectionLimits
  /** The TCP engine in use (the one asked for, unless this Node lacks what 'uv' needs). */
  readonly engine: Engine
  /** Faults ("toxics") on services, ports and endpoints (api/faults.ts). */
  readonly faults: FaultRegistry = new FaultRegistry(() => this.dataplane.runtimes.values())
  /** --vip-interface, once open (null when off). */
  vips: VipInterface | null = null
  private queue: Promise<unknown>
  private readonly opening: Promise<void>
  private pruned = false
  private connectionIds = 0
  private closed = false
  private readonly nodePortCidrs: ReturnType<typeof parseCidr>[] | null
  private readonly strictBind: boolean

  constructor (options: ProxyOptions = {}) {
    super()
    const opts = resolveOptions(options)
    this.logger = opts.logger
    this.table = new Table({ serviceClusterIPRange: opts.serviceClusterIPRange, serviceNodePortRange: opts.serviceNodePortRange })
    this.hostname = opts.hostname
    this.nodePortCidrs = opts.nodePortAddresses.length > 0 ? opts.nodePortAddresses.map((c) => parseCidr(c, '--nodeport-addresses')) : null
    const np = this.nodePortHosts(opts.bindAddress) // said once at start: node ports are the one thing not on loopback by default
    this.logger.info({ nodePortAddresses: np }, np.length === 0 ? 'node ports listen on no address: none of this node\'s addresses is inside the node port CIDRs' : `node ports listen on ${np.some((h) => h === '0.0.0.0' || h === '::') ? `every address of this node (${np.join(', ')})` : np.join(', ')}`)
    this.limits = new ConnectionLimits(opts.maxConnections)
    this.strictBind = opts.strictBind
    // The VIP interface opens before the first write: every write waits for it, and when it
    // cannot open (no CAP_NET_ADMIN) every write fails with its VipError, changing nothing.
    this.opening = opts.vipInterface === '' ? Promise.resolve() : this.openVips(opts.vipInterface)
    this.opening.catch(() => {}) // surfaced by ready() and by each write
    this.queue = this.opening
    this.engine = engineFor(opts.engine)
    if (this.engine !== opts.engine) this.logger.info({ engine: this.engine }, 'libuv handles not available on this Node: using the node engine (net.Socket, dgram)')
    const self = this
    this.dataplane = new DataPlane({
      algorithm: opts.loadBalancer,
      hostname: this.hostname,
      nodePortHosts: () => this.nodePortHosts(opts.bindAddress),
      retryDue: () => { void this.retryFailedListeners() },
      ctx: {
        events: this,
        logger: this.logger,
        ephemeralPorts: opts.ephemeralPorts,
        udpTimeoutMs: opts.udpTimeoutMs,
        udpMaxSessions: opts.udpMaxSessions,
        pooledReads: opts.pooledReads,
        engine: this.engine,
        limits: this.limits,
        tcpIdleTimeoutMs: opts.tcpIdleTimeoutMs,
        outlier: { consecutiveFailures: opts.outlierConsecutiveFailures, baseEjectionMs: opts.outlierBaseEjectionTimeMs, maxEjectionMs: Math.max(opts.outlierBaseEjectionTimeMs, opts.outlierMaxEjectionTimeMs), maxEjectionPercent: opts.outlierMaxEjectionPercent },
        proxyProtocol: opts.proxyProtocol,
        nextConnectionId: () => ++self.connectionIds,
        faultsFor: (rt) => self.faults.forPort(rt),
        random: opts.seed === null ? Math.random : seededRandom(opts.seed),
      },
    })
  }

  /** Resolves once the proxy can serve (its VIP interface open, with --vip-interface); rejects with the reason it cannot. */
  async ready (): Promise<void> {
    await this.opening
  }

  private async openVips (name: string): Promise<void> {
    const v = await VipInterface.open(name, this.logger)
    this.vips = v
    this.dataplane.vips = v
  }

  /** Validates raw Kubernetes objects (as kubectl prints them) and creates or replaces them. */
  apply (objects: unknown, file = '<apply>'): Promise<ApplyResult> {
    return this.enqueueWrite(async () => {
      const doc = parseObjects(Array.isArray(objects) ? objects : [objects], file)
      return await this.serve(await this.table.writeInSlices(doc.objects, [], file), doc.warnings)
    })
  }

  /** Writes already-validated objects: upserts and deletes in one atomic step. */
  write (upserts: KubeObject[], deletes: ObjectRef[], file = '<write>'): Promise<ApplyResult> {
    return this.enqueueWrite(async () => {
      return await this.serve(await this.table.writeInSlices(upserts, deletes, file))
    })
  }

  /** Makes the proxy serve exactly `objects` (a config file or snapshot is the whole truth). */
  replace (objects: KubeObject[], file = '<replace>'): Promise<ApplyResult> {
    return this.enqueueWrite(async () => {
      return await this.serve(await this.table.replaceAllInSlices(objects, file))
    })
  }

  /** Deletes objects by reference (`Service ns/name`, or ObjectRef). Unknown objects are ignored. */
  delete (...refs: Array<ObjectRef | string>): Promise<ApplyResult> {
    return this.enqueueWrite(async () => {
      const parsed = refs.map((r) => (typeof r === 'string' ? parseRef(r) : r))
      return await this.serve(await this.table.writeInSlices([], parsed, '<delete>'))
    })
  }

  /**
   * Binds every listener in error again now, in the write queue. The sources call it at each
   * resync and on SIGHUP (the backoff timer does too); resolves at once when none failed, and
   * never rejects.
   */
  retryFailedListeners (): Promise<void> {
    if (this.closed || this.dataplane.inError === 0) return Promise.resolve()
    const retry = async (): Promise<void> => { await this.dataplane.retryFailed() }
    const run = this.queue.then(retry, retry).catch((err: unknown) => {
      this.logger.error({ err: (err as Error).message }, 'retrying failed listeners failed')
    })
    this.queue = run
    return run
  }

  /** Listeners that could not bind and are being retried (/readyz names them). */
  listenersInError (): BindFailure[] {
    return this.dataplane.listenersInError()
  }

  /**
   * Where a service port is being served: its clusterIP frontend (or the first of the
   * given kind) with the port actually bound.
   */
  address (service: string, port: string | number, kind: FrontendKind = 'clusterIP'): { address: string, port: number, family: 'IPv4' | 'IPv6' } {
    const [ns, name] = service.includes('/') ? service.split('/', 2) as [string, string] : ['default', service]
    const states = this.table.statesOf(`${ns}/${name}`)
    if (states.length === 0) throw new NotFoundError(`no service ${ns}/${name}`)
    const st = states.find((s) => s.port.name === port || s.port.port === port || String(s.port.port) === port)
    if (st === undefined) throw new NotFoundError(`service ${ns}/${name} has no port ${port}`)
    for (const fe of this.dataplane.frontends.values()) {
      if (fe.spec.runtimeId === st.id && fe.spec.kind === kind) {
        if (fe.state !== 'listening') throw new NotFoundError(`service port ${st.id} (${kind}) is not listening: ${fe.error || fe.state}`)
        return { address: fe.spec.host, port: fe.boundPort, family: fe.spec.host.includes(':') ? 'IPv6' : 'IPv4' }
      }
    }
    throw new NotFoundError(`service port ${st.id} has no ${kind} listener`)
  }

  /** Live state of every service port, sorted by id. */
  status (): ServicePortStatus[] {
    const byRt = new Map<string, FrontendStatus[]>()
    for (const fe of this.dataplane.frontends.values()) {
      let list = byRt.get(fe.spec.runtimeId)
      if (list === undefined) byRt.set(fe.spec.runtimeId, (list = []))
      list.push({ kind: fe.spec.kind, protocol: fe.spec.protocol, address: fe.spec.host, port: fe.spec.port, boundPort: fe.boundPort, state: fe.state, error: fe.error })
    }
    return this.table.allStates().map((st) => {
      const rt = this.dataplane.runtimes.get(st.id)
      // A port the data plane has not taken yet shows its endpoints with zero counters.
      const eps = rt?.endpoints ?? st.endpoints.map((e) => new Backend(e.ip, e.port, e.nodeName, e.podName, e.ready, e.key))
      return {
        id: st.id,
        namespace: st.service.namespace,
        name: st.service.name,
        port: st.port.name === '' ? String(st.port.port) : st.port.name,
        protocol: st.port.protocol,
        clusterIP: st.service.clusterIP,
        type: st.service.type,
        algorithm: rt?.balancer.algorithm ?? 'round-robin',
        sessionAffinity: st.service.sessionAffinity,
        proxyProtocol: effectiveMode(proxyProtocolOf(st.service.annotations), this.dataplane.ctx.proxyProtocol, st.port.protocol),
        frontends: byRt.get(st.id) ?? [],
        endpoints: eps.map((b) => ({ endpoint: b.key, nodeName: b.nodeName, ready: b.ready, active: b.active, accepted: b.accepted, dialFailures: b.dialFailures, bytesUp: b.bytesUp, bytesDown: b.bytesDown, eligible: rt?.inRotation(b) ?? true, ejected: b.ejected, ejectedUntil: b.ejectedUntil, ejections: b.ejectionsTotal, consecutiveFailures: b.consecutiveFailures, check: b.check })),
        active: rt === undefined ? 0 : rt.active + rt.udpSessionsActive,
        accepted: rt?.accepted ?? 0,
        dialFailures: rt?.dialFailures ?? 0,
        bytesUp: rt?.bytesUp ?? 0,
        bytesDown: rt?.bytesDown ?? 0,
        faults: this.faults.forStatus(`${st.service.namespace}/${st.service.name}`, st.port.name, st.port.port),
      }
    })
  }

  /**
   * Graceful drain: stop accepting at once, let open connections finish for up to `graceMs`,
   * then close what is left. Resolves when nothing is open.
   */
  async drain (graceMs: number): Promise<void> {
    this.dataplane.stopAccepting()
    const deadline = Date.now() + graceMs
    while (this.dataplane.openCount() > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    await this.close()
  }

  /** Closes every listener and connection; leaves no handle open. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.queue.catch(() => {})
    await this.dataplane.close()
    this.waiters?.close() // after the last close events: waits reject, iterators end
  }

  private waiters: EventWaiters | null = null
  /** The first `name` event `predicate` accepts; rejects with WaitTimeoutError (SVCPROXY_TIMEOUT) naming what was awaited (api/wait-for.ts). */
  waitFor<K extends keyof ProxyEventMap> (name: K, predicate?: ((e: ProxyEventMap[K][0]) => boolean) | null, opts?: WaitForOptions): Promise<ProxyEventMap[K][0]> {
    return (this.waiters ??= new EventWaiters(this, this.table)).waitFor(name, predicate, opts)
  }

  /** `for await (const e of proxy.events({ service }))`: the events as they come, filtered, until `break` or close(). */
  events (opts?: EventsOptions): AsyncIterableIterator<ProxyEvent> {
    return (this.waiters ??= new EventWaiters(this, this.table)).events(opts)
  }

  /** The endpoint the next connection from `clientIP` would get, and why every other would not; moves nothing (api/explain.ts). */
  explain (service: string, opts: ExplainOptions): Explanation {
    return explain(this.table, this.dataplane, this.hostname, service, opts)
  }

  /** After a table write: re-serve the changed services; resolves once their sockets are ready. */
  private async serve (changed: Set<string>, warnings: string[] = []): Promise<ApplyResult> {
    await this.dataplane.sync(this.table, changed)
    // The first state served is the whole truth (a file, a store's list, a state file):
    // addresses on the VIP interface that it does not need are left over from an earlier run.
    if (this.vips !== null && !this.pruned) {
      this.pruned = true
      await this.vips.prune()
    }
    return { revision: this.table.revision, warnings, changed: [...changed], failed: this.dataplane.failuresOf(changed) }
  }

  /** A write; with strictBind, one whose listeners could not all bind rejects (applied all the same). */
  private enqueueWrite (fn: () => Promise<ApplyResult>): Promise<ApplyResult> {
    const run = this.enqueue(fn)
    if (!this.strictBind) return run
    return run.then((r) => {
      if (r.failed.length > 0) throw new BindError(r.failed, r.revision)
      return r
    })
  }

  private enqueue<T> (fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new ClosedError())
    const timed = (): Promise<T> => this.syncStats.time(fn)
    const run = this.queue.then(async () => { await this.opening; return await timed() }, async () => { await this.opening; return await timed() })
    this.queue = run.catch(() => {})
    return run
  }

  private nodePortHosts (bindAddress: string): string[] {
    if (this.nodePortCidrs === null) return [bindAddress]
    const out: string[] = []
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) {
        if (a.family === 'IPv4' && this.nodePortCidrs.some((c) => cidrContains(c, a.address))) out.push(a.address)
      }
    }
    return out
  }
}

export function createProxy (opts: ProxyOptions = {}): ServiceProxy {
  return new ServiceProxy(opts)
}
