import type { ServiceProxy } from '../api/service-proxy.js'
import { ValidationError } from '../errors.js'
import type { FaultScope, Toxic } from '../faults/toxic.js'
import { type HostPort, freePortOn, hostServiceName, joinHostPort, listenAddress, upstreamAddress } from './addresses.js'
import { ApiFailure, PROXY_EXISTS, badRequest } from './http.js'
import { type FaultOps, faultCall } from './toxics.js'

/** The namespace of the Services behind API-created proxies. */
export const API_NAMESPACE = 'toxiproxy'

/**
 * A proxy made through the API. Served as one port (`p<id>`) of the Service that holds every
 * API proxy on its listen address (a clusterIP belongs to one Service), with that port's
 * Endpoints: its upstream. Disabled: the port is gone (the listener closed), the record and its
 * toxics are kept. Its toxics live here; the fault registry holds them while it is enabled.
 */
export interface ApiProxy {
  name: string
  /** As Toxiproxy reports it: the bound `ip:port` once started, else as given. */
  listen: string
  upstream: string
  enabled: boolean
  readonly id: number
  /** Where it is served (enabled) or was last: listen address resolved, service port. */
  at: HostPort | null
  up: HostPort | null
  toxics: Toxic[]
}

export interface ProxyInput { name: string, listen: string, upstream: string, enabled: boolean }

export class ApiProxies {
  readonly byName = new Map<string, ApiProxy>()
  private nextId = 1
  /** A proxy being created: not in `byName` yet, but in its address's Service while it starts. */
  private creating: ApiProxy | null = null

  constructor (private readonly proxy: ServiceProxy, private readonly faults: () => FaultOps) {}

  /** The keys (`toxiproxy/listen-...`) of the Services this collection owns. */
  ownsService (namespace: string, name: string): boolean {
    return namespace === API_NAMESPACE && name.startsWith('listen-')
  }

  scopeOf (p: ApiProxy): FaultScope | null {
    return p.at === null ? null : { service: `${API_NAMESPACE}/${hostServiceName(p.at.host)}`, port: `p${p.id}` }
  }

  /** POST /proxies: 409 when the name is taken (by a Kubernetes service port too: `taken`); the new record is seen by applyHost while it starts. */
  async create (input: ProxyInput, taken: boolean): Promise<ApiProxy> {
    if (taken || this.byName.has(input.name)) throw new ApiFailure(409, PROXY_EXISTS)
    const p: ApiProxy = { name: input.name, listen: input.listen, upstream: input.upstream, enabled: false, id: this.nextId++, at: null, up: null, toxics: [] }
    this.creating = p
    try {
      if (input.enabled) await this.start(p)
      else await this.checkAddresses(p)
    } finally {
      this.creating = null
    }
    this.byName.set(p.name, p)
    return p
  }

  /** POST /proxies/{name}: listen/upstream changed → stopped and moved; then started or stopped as `enabled` says (Proxy.Update). */
  async update (p: ApiProxy, listen: string, upstream: string, enabled: boolean): Promise<void> {
    if (listen !== p.listen || upstream !== p.upstream) {
      const before = { listen: p.listen, upstream: p.upstream }
      await this.stop(p)
      p.listen = listen
      p.upstream = upstream
      try {
        await this.checkAddresses(p)
      } catch (err) {
        Object.assign(p, before)
        throw err
      }
    }
    if (enabled && !p.enabled) await this.start(p)
    else if (!enabled && p.enabled) await this.stop(p)
  }

  async remove (p: ApiProxy): Promise<void> {
    await this.stop(p)
    this.byName.delete(p.name)
  }

  /** Listening on `listen`, forwarding to `upstream`, with its toxics in the registry. */
  async start (p: ApiProxy): Promise<void> {
    if (p.enabled) return
    const at = await listenAddress(p.listen)
    const up = await upstreamAddress(p.upstream)
    const sameHost = [...this.byName.values()].filter((q) => q !== p && q.enabled && q.at?.host === at.host)
    if (at.port === 0) at.port = await freePortOn(at.host)
    else if (sameHost.some((q) => q.at?.port === at.port)) throw new ApiFailure(500, `listen tcp ${joinHostPort(at.host, at.port)}: bind: address already in use`)
    p.at = at
    p.up = up
    p.enabled = true
    try {
      const res = await this.applyHost(at.host)
      const failed = res.failed.find((f) => f.service === `${API_NAMESPACE}/${hostServiceName(at.host)}` && f.port === `p${p.id}`)
      if (failed !== undefined) throw new ApiFailure(500, `listen tcp ${failed.address}: ${failed.error}`)
    } catch (err) {
      p.enabled = false
      await this.applyHost(at.host).catch(() => {})
      if (err instanceof ValidationError) throw badRequest(err.issues.map((i) => `${i.path}: ${i.message}`).join('; '))
      throw err
    }
    p.listen = this.boundListen(p)
    const scope = this.scopeOf(p) as FaultScope
    const faults = this.faults()
    faults.clear(scope)
    for (const t of p.toxics) faultCall(() => faults.add(scope, { ...t }))
  }

  /** Listener closed (its connections reset, as Toxiproxy's stop closes them); record and toxics kept. */
  async stop (p: ApiProxy): Promise<void> {
    if (!p.enabled || p.at === null) return
    const scope = this.scopeOf(p) as FaultScope
    p.enabled = false
    await this.applyHost(p.at.host)
    try { this.faults().clear(scope) } catch {}
  }

  /**
   * Writes again the Service of every address where an enabled proxy's port is missing from the
   * table: a source that replaces the whole table (`run --config` reloading its file) removed it.
   */
  async heal (): Promise<void> {
    const hosts = new Set<string>()
    for (const p of this.byName.values()) {
      if (!p.enabled || p.at === null) continue
      const states = this.proxy.table.statesOf(`${API_NAMESPACE}/${hostServiceName(p.at.host)}`)
      if (!states.some((st) => st.port.name === `p${p.id}`)) hosts.add(p.at.host)
    }
    for (const host of hosts) {
      await this.applyHost(host)
      for (const p of this.byName.values()) if (p.enabled && p.at?.host === host) p.listen = this.boundListen(p)
    }
  }

  /** Resolves `listen` and `upstream` for a proxy that is not started: a bad address is a 400 at once. */
  private async checkAddresses (p: ApiProxy): Promise<void> {
    await listenAddress(p.listen)
    await upstreamAddress(p.upstream)
  }

  /** `ip:port` actually bound (the proxy may bind ephemeral ports: createProxy({ ephemeralPorts })). */
  private boundListen (p: ApiProxy): string {
    const at = p.at as HostPort
    try {
      const a = this.proxy.address(`${API_NAMESPACE}/${hostServiceName(at.host)}`, `p${p.id}`)
      return joinHostPort(a.address, a.port)
    } catch {
      return joinHostPort(at.host, at.port)
    }
  }

  /** Writes the Service and Endpoints of one listen address from the enabled proxies on it (none: deleted). */
  private async applyHost (host: string): ReturnType<ServiceProxy['apply']> {
    const name = hostServiceName(host)
    const on = [...this.byName.values(), ...(this.creating === null ? [] : [this.creating])].filter((q) => q.enabled && q.at?.host === host)
    const unique = [...new Set(on)].sort((a, b) => a.id - b.id)
    if (unique.length === 0) return await this.proxy.delete(`service ${API_NAMESPACE}/${name}`, `endpoints ${API_NAMESPACE}/${name}`)
    const metadata = { name, namespace: API_NAMESPACE, labels: { 'app.kubernetes.io/managed-by': 'svcproxy-toxiproxy-api' } }
    const ports = unique.map((q) => ({ name: `p${q.id}`, protocol: 'TCP', port: (q.at as HostPort).port, targetPort: (q.up as HostPort).port }))
    const subsets = unique.map((q) => ({ addresses: [{ ip: (q.up as HostPort).host }], ports: [{ name: `p${q.id}`, protocol: 'TCP', port: (q.up as HostPort).port }] }))
    return await this.proxy.apply([
      { apiVersion: 'v1', kind: 'Service', metadata, spec: { type: 'ClusterIP', clusterIP: host, ports } },
      { apiVersion: 'v1', kind: 'Endpoints', metadata, subsets },
    ], '<toxiproxy>')
  }
}
