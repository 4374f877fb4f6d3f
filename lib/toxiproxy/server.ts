import { readFileSync } from 'node:fs'
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http'
import pino, { type Logger } from 'pino'
import { isLoopback, parseBindAddress } from '../admin/server.js'
import type { ServiceProxy } from '../api/service-proxy.js'
import { AdminListenError, ClosedError, ConfigError } from '../errors.js'
import { ApiFailure, readJson, sendEmpty, sendFailure, sendJson } from './http.js'
import { ToxiproxyApi } from './routes.js'
import { API_NAMESPACE } from './proxies.js'
import type { EndpointsChangedEvent } from '../frontend/events.js'

export interface ToxiproxyApiOptions {
  /** `IP:PORT` to listen on (Toxiproxy's is 127.0.0.1:8474); port 0 picks a free port. */
  address: string
  /**
   * Listen on a non-loopback address. Off by default: the API changes what the proxy serves
   * and breaks connections on purpose, and has no authentication (Toxiproxy's has none either).
   */
  allowRemote?: boolean
  logger?: Logger
}

export interface ToxiproxyApiServer {
  /** `http://host:port` actually bound: what a Toxiproxy client takes. */
  readonly url: string
  /** Stops the HTTP server. Proxies created through it keep serving until the ServiceProxy closes. */
  close: () => Promise<void>
}

type Handler = (api: ToxiproxyApi, req: IncomingMessage, res: ServerResponse, p: string[]) => Promise<void>

const ok = (res: ServerResponse, body: unknown): void => { sendJson(res, 200, body) }

// Toxiproxy's routes (api.go): method → handler, per path shape.
const ROUTES: Array<{ path: RegExp, methods: Record<string, Handler> }> = [
  { path: /^\/version$/, methods: { GET: async (_a, _q, res) => { res.writeHead(200, { 'content-type': 'application/json;charset=utf-8' }).end(`{"version": "${svcproxyVersion()}"}\n`) } } },
  { path: /^\/reset$/, methods: { POST: async (a, _q, res) => { await a.serial(() => a.reset()); sendEmpty(res, 204) } } },
  { path: /^\/populate$/, methods: { POST: async (a, q, res) => { const body = await readJson(q); sendJson(res, 201, { proxies: await a.serial(() => a.populate(body)) }) } } },
  {
    path: /^\/proxies$/,
    methods: {
      GET: async (a, _q, res) => { ok(res, await a.serial(() => a.list())) },
      POST: async (a, q, res) => { const body = await readJson(q); sendJson(res, 201, await a.serial(() => a.create(body))) },
    },
  },
  {
    path: /^\/proxies\/([^/]+)$/,
    methods: {
      GET: async (a, _q, res, [n]) => { ok(res, await a.serial(() => a.get(n as string))) },
      POST: update,
      PATCH: update,
      DELETE: async (a, _q, res, [n]) => { await a.serial(() => a.remove(n as string)); sendEmpty(res, 204) },
    },
  },
  {
    path: /^\/proxies\/([^/]+)\/toxics$/,
    methods: {
      GET: async (a, _q, res, [n]) => { ok(res, await a.serial(() => a.toxics(n as string))) },
      POST: async (a, q, res, [n]) => { const body = await readJson(q); ok(res, await a.serial(() => a.addToxic(n as string, body))) },
    },
  },
  {
    path: /^\/proxies\/([^/]+)\/toxics\/([^/]+)$/,
    methods: {
      GET: async (a, _q, res, [n, t]) => { ok(res, await a.serial(() => a.toxic(n as string, t as string))) },
      POST: updateToxic,
      PATCH: updateToxic,
      DELETE: async (a, _q, res, [n, t]) => { await a.serial(() => a.removeToxic(n as string, t as string)); sendEmpty(res, 204) },
    },
  },
]

async function update (a: ToxiproxyApi, q: IncomingMessage, res: ServerResponse, [n]: string[]): Promise<void> {
  const body = await readJson(q)
  ok(res, await a.serial(() => a.update(n as string, body)))
}

async function updateToxic (a: ToxiproxyApi, q: IncomingMessage, res: ServerResponse, [n, t]: string[]): Promise<void> {
  const body = await readJson(q)
  ok(res, await a.serial(() => a.updateToxic(n as string, t as string, body)))
}

/**
 * `--toxiproxy-address` checked: `IP:PORT`, and a loopback address unless `allowRemote`
 * (ConfigError naming the flag and the way out).
 */
export function checkToxiproxyAddress (address: string, allowRemote: boolean): { host: string, port: number } {
  const addr = parseBindAddress(address, '--toxiproxy-address')
  if (addr === null) throw new ConfigError('--toxiproxy-address: expected IP:PORT, got ""')
  if (!isLoopback(addr.host) && !allowRemote) {
    throw new ConfigError(`--toxiproxy-address: ${address} is not a loopback address; the Toxiproxy API has no authentication and changes what the proxy serves. Listen on 127.0.0.1, or pass --toxiproxy-allow-remote (allowRemote: true) to serve it to the network`)
  }
  return addr
}

/**
 * Starts a Toxiproxy-compatible HTTP API over `proxy` (docs/toxiproxy.md): proxies created
 * through it are services of the proxy, every Kubernetes service port is listed as a proxy
 * `name.namespace:port`, toxics go to `proxy.faults`. Loopback only unless `allowRemote`.
 */
export async function startToxiproxyApi (proxy: ServiceProxy, opts: ToxiproxyApiOptions): Promise<ToxiproxyApiServer> {
  const log = opts.logger ?? pino({ level: 'silent' })
  const addr = checkToxiproxyAddress(opts.address, opts.allowRemote === true)
  const api = new ToxiproxyApi(proxy)
  // A port of an API proxy gone without the API removing it: a source replaced the whole table.
  const onEndpoints = (ev: EndpointsChangedEvent): void => {
    if (ev.endpoints.length > 0 || !ev.service.startsWith(`${API_NAMESPACE}/listen-`)) return
    api.serial(() => api.proxies.heal()).catch((err: unknown) => { if (!(err instanceof ClosedError)) log.error({ err: (err as Error).message }, 'toxiproxy API: cannot restore its proxies after the table was replaced') })
  }
  const server: Server = createServer((req, res) => { void handle(api, req, res, log) })
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(new AdminListenError(`toxiproxy API: cannot listen on ${opts.address} (--toxiproxy-address): ${err.code ?? err.message}`, { cause: err }))
    })
    server.listen(addr.port, addr.host, () => resolve())
  })
  server.on('error', (err) => { log.error({ err: err.message }, 'toxiproxy API server error') })
  const a = server.address()
  const port = typeof a === 'object' && a !== null ? a.port : addr.port
  const url = `http://${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${port}`
  if (!isLoopback(addr.host)) log.warn({ address: url }, 'toxiproxy API bound to a non-loopback address: anyone on the network can change what this proxy serves')
  log.info({ address: url }, 'toxiproxy API listening')
  proxy.on('endpoints', onEndpoints)
  return {
    url,
    close: async () => {
      proxy.off('endpoints', onEndpoints)
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
    },
  }
}

async function handle (api: ToxiproxyApi, req: IncomingMessage, res: ServerResponse, log: Logger): Promise<void> {
  // Toxiproxy refuses browsers (a page could otherwise drive a local API): so does this one.
  if ((req.headers['user-agent'] ?? '').startsWith('Mozilla/')) {
    res.writeHead(403, { 'content-type': 'text/plain; charset=utf-8' }).end('User agent not allowed\n')
    return
  }
  const url = req.url ?? '/'
  const q = url.indexOf('?')
  const path = q < 0 ? url : url.slice(0, q)
  for (const r of ROUTES) {
    const m = r.path.exec(path)
    if (m === null) continue
    const h = r.methods[req.method ?? '']
    if (h === undefined) {
      res.writeHead(405, { allow: Object.keys(r.methods).join(', ') }).end()
      return
    }
    try {
      const params = m.slice(1).map((s) => decodeURIComponent(s))
      await h(api, req, res, params)
    } catch (err) {
      if (err instanceof ApiFailure) {
        if (err.status >= 500) log.warn({ method: req.method, path, err: err.message }, 'toxiproxy API request failed')
        sendFailure(res, err)
        return
      }
      if (err instanceof URIError) {
        sendFailure(res, new ApiFailure(400, `bad request: ${err.message}`))
        return
      }
      log.error({ method: req.method, path, err: (err as Error).message }, 'toxiproxy API request failed')
      if (!res.headersSent) sendFailure(res, new ApiFailure(500, (err as Error).message))
      else res.end()
    }
    return
  }
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('404 page not found\n')
}

let version: string | undefined
/** svcproxy's version, from its package.json (found upward from this file, in lib/ or dist/lib/). */
function svcproxyVersion (): string {
  if (version !== undefined) return version
  version = 'unknown'
  let dir = new URL('.', import.meta.url)
  for (let i = 0; i < 5; i++, dir = new URL('..', dir)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { name?: unknown, version?: unknown }
      if (pkg.name === 'svcproxy' && typeof pkg.version === 'string') return (version = pkg.version)
    } catch { /* one level up */ }
  }
  return version
}
