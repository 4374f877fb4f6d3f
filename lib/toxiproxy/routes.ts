import type { ServiceProxy } from '../api/service-proxy.js'
import type { FaultScope, Toxic } from '../faults/toxic.js'
import { ApiFailure, PROXY_NOT_FOUND, badRequest, missingField, objectBody, optBool, optString } from './http.js'
import { type KubeProxy, kubeProxies, kubeProxy } from './kube.js'
import { type ApiProxy, ApiProxies, type ProxyInput } from './proxies.js'
import { validateToxic } from '../faults/validate.js'
import { type FaultOps, type ToxicJson, chainOrder, faultCall, faultsOf, findToxic, parseToxicCreate, parseToxicUpdate, toxicJson } from './toxics.js'

/** A proxy as Toxiproxy prints it. */
export interface ProxyJson {
  name: string
  listen: string
  upstream: string
  enabled: boolean
  toxics: ToxicJson[]
}

type Target = { api: ApiProxy } | { kube: KubeProxy }

/** A Kubernetes-backed proxy belongs to its source: the API may manage its toxics only. */
const KUBE_OWNED = (name: string): ApiFailure => new ApiFailure(409, `proxy ${name} is a Kubernetes service port: it is owned by its source (manifest file, Redis); only its toxics can be changed here`)

/**
 * Toxiproxy's API over a ServiceProxy, one operation at a time (a queue, as Toxiproxy's
 * collection lock): the handlers behind server.ts's routes.
 */
export class ToxiproxyApi {
  readonly proxies: ApiProxies
  private queue: Promise<unknown> = Promise.resolve()

  constructor (private readonly proxy: ServiceProxy) {
    this.proxies = new ApiProxies(proxy, () => this.faults())
  }

  /** Runs `fn` after every earlier operation. */
  serial<T> (fn: () => Promise<T> | T): Promise<T> {
    const run = this.queue.then(fn, fn)
    this.queue = run.catch(() => {})
    return run
  }

  private faults (): FaultOps {
    return faultsOf(this.proxy)
  }

  private owns = (ns: string, name: string): boolean => this.proxies.ownsService(ns, name)

  private find (name: string): Target {
    const api = this.proxies.byName.get(name)
    if (api !== undefined) return { api }
    const kube = kubeProxy(this.proxy, this.owns, name)
    if (kube !== undefined) return { kube }
    throw new ApiFailure(404, PROXY_NOT_FOUND)
  }

  private toxicsOf (t: Target): Toxic[] {
    if ('api' in t) return chainOrder(t.api.toxics)
    const list = this.faults().list(t.kube.scope)
    return chainOrder(list.filter((x) => sameScope(x.scope, t.kube.scope)))
  }

  private json (t: Target): ProxyJson {
    const toxics = this.toxicsOf(t).map(toxicJson)
    if ('api' in t) return { name: t.api.name, listen: t.api.listen, upstream: t.api.upstream, enabled: t.api.enabled, toxics }
    return { name: t.kube.name, listen: t.kube.listen, upstream: t.kube.upstream, enabled: true, toxics }
  }

  /** GET /proxies: an object keyed by name, sorted (Go's map marshalling). */
  list (): Record<string, ProxyJson> {
    const all: Target[] = [...[...this.proxies.byName.values()].map((api) => ({ api })), ...kubeProxies(this.proxy, this.owns).map((kube) => ({ kube }))]
    const out: Record<string, ProxyJson> = {}
    for (const j of all.map((t) => this.json(t)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) out[j.name] = j
    return out
  }

  get (name: string): ProxyJson {
    return this.json(this.find(name))
  }

  /** POST /proxies. */
  async create (body: unknown): Promise<ProxyJson> {
    const input = parseProxy(objectBody(body), '')
    const p = await this.proxies.create(input, kubeProxy(this.proxy, this.owns, input.name) !== undefined)
    return this.json({ api: p })
  }

  /** POST|PATCH /proxies/{name}: unspecified fields keep their value. */
  async update (name: string, body: unknown): Promise<ProxyJson> {
    const t = this.find(name)
    const o = objectBody(body)
    if ('kube' in t) {
      const same = (optString(o, 'listen') ?? t.kube.listen) === t.kube.listen && (optString(o, 'upstream') ?? t.kube.upstream) === t.kube.upstream && (optBool(o, 'enabled') ?? true)
      if (!same) throw KUBE_OWNED(name)
      return this.json(t)
    }
    const p = t.api
    await this.proxies.update(p, optString(o, 'listen') ?? p.listen, optString(o, 'upstream') ?? p.upstream, optBool(o, 'enabled') ?? p.enabled)
    return this.json(t)
  }

  /** DELETE /proxies/{name}. */
  async remove (name: string): Promise<void> {
    const t = this.find(name)
    if ('kube' in t) throw KUBE_OWNED(name)
    await this.proxies.remove(t.api)
  }

  /**
   * POST /populate: every proxy checked first (nothing changes on a bad one), then each added,
   * or replaced when its listen or upstream differs (kept as it is otherwise).
   */
  async populate (body: unknown): Promise<ProxyJson[]> {
    if (body === undefined) throw badRequest('EOF')
    if (!Array.isArray(body)) throw badRequest(`expected a JSON array of proxies, got ${JSON.stringify(body)?.slice(0, 40)}`)
    const inputs: ProxyInput[] = []
    const names = new Set<string>()
    body.forEach((raw, i) => {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw badRequest(`proxy ${i + 1}: expected an object`)
      const input = parseProxy(raw as Record<string, unknown>, ` at proxy ${i + 1}`)
      if (names.has(input.name)) throw badRequest(`duplicate proxy name ${JSON.stringify(input.name)}`)
      if (kubeProxy(this.proxy, this.owns, input.name) !== undefined) throw KUBE_OWNED(input.name)
      names.add(input.name)
      inputs.push(input)
    })
    const out: ProxyJson[] = []
    for (const input of inputs) {
      let p = this.proxies.byName.get(input.name)
      if (p !== undefined && (p.listen !== input.listen || p.upstream !== input.upstream)) {
        await this.proxies.remove(p)
        p = undefined
      }
      if (p === undefined) p = await this.proxies.create(input, false) // an unchanged one is kept as it is (AddOrReplace)
      out.push(this.json({ api: p }))
    }
    return out
  }

  /** POST /reset: every proxy enabled, every toxic removed. */
  async reset (): Promise<void> {
    for (const p of this.proxies.byName.values()) p.toxics = []
    this.faults().clear() // first: a proxy that cannot start again (500) leaves no toxic behind
    for (const p of this.proxies.byName.values()) await this.proxies.start(p)
  }

  toxics (name: string): ToxicJson[] {
    return this.toxicsOf(this.find(name)).map(toxicJson)
  }

  toxic (name: string, toxic: string): ToxicJson {
    return toxicJson(findToxic(this.toxicsOf(this.find(name)), toxic))
  }

  /** POST /proxies/{name}/toxics: 200 with the toxic, as Toxiproxy (not 201). */
  addToxic (name: string, body: unknown): ToxicJson {
    const t = this.find(name)
    const existing = this.toxicsOf(t)
    const input = parseToxicCreate(body, (n) => existing.some((x) => x.name === n))
    const faults = this.faults()
    if ('kube' in t) return toxicJson(faultCall(() => faults.add(t.kube.scope, input))[0] as Toxic)
    const p = t.api
    const scope = this.proxies.scopeOf(p)
    const added = p.enabled && scope !== null
      ? faultCall(() => faults.add(scope, input))[0] as Toxic
      : this.checked(input)
    p.toxics.push(added)
    return toxicJson(added)
  }

  /** POST|PATCH /proxies/{name}/toxics/{toxic}: attributes merged, toxicity kept unless given. */
  updateToxic (name: string, toxic: string, body: unknown): ToxicJson {
    const t = this.find(name)
    const cur = findToxic(this.toxicsOf(t), toxic)
    const patch = parseToxicUpdate(body, cur)
    const faults = this.faults()
    if ('kube' in t) return toxicJson(faultCall(() => faults.update(t.kube.scope, toxic, patch)))
    const p = t.api
    const scope = this.proxies.scopeOf(p)
    const updated = p.enabled && scope !== null
      ? faultCall(() => faults.update(scope, toxic, patch))
      : this.checked({ ...cur, ...patch })
    p.toxics = p.toxics.map((x) => (x.name === toxic ? updated : x))
    return toxicJson(updated)
  }

  /** DELETE /proxies/{name}/toxics/{toxic}. */
  removeToxic (name: string, toxic: string): void {
    const t = this.find(name)
    findToxic(this.toxicsOf(t), toxic)
    if ('kube' in t) {
      this.faults().remove(t.kube.scope, toxic)
      return
    }
    const p = t.api
    const scope = this.proxies.scopeOf(p)
    if (p.enabled && scope !== null) this.faults().remove(scope, toxic)
    p.toxics = p.toxics.filter((x) => x.name !== toxic)
  }

  /** A toxic for a disabled proxy: validated as the registry would, kept for when it is enabled. */
  private checked (input: Toxic): Toxic {
    return faultCall(() => validateToxic(input))[0] as Toxic
  }
}

function sameScope (a: FaultScope, b: FaultScope): boolean {
  return a.service === b.service && a.port === b.port && a.endpoint === undefined
}

/** A proxy body: name and upstream required; enabled defaults to true; listen '' = 127.0.0.1:0. */
function parseProxy (o: Record<string, unknown>, where: string): ProxyInput {
  const name = optString(o, 'name') ?? ''
  const listen = optString(o, 'listen') ?? ''
  const upstream = optString(o, 'upstream') ?? ''
  const enabled = optBool(o, 'enabled') ?? true
  if (name === '') throw missingField(`name${where}`)
  if (upstream === '') throw missingField(`upstream${where}`)
  return { name, listen, upstream, enabled }
}
