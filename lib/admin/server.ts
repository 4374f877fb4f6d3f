import { DEFAULTS } from '../defaults.js'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { isIPv6 } from 'node:net'
import pino, { type Logger } from 'pino'
import { AdminListenError, ConfigError } from '../errors.js'
import type { ServiceProxy } from '../api/service-proxy.js'
import { apiHealth, type SourceHealth } from '../sources/health.js'
import { attachAccessLog } from './access-log.js'
import { renderMetrics } from './collect.js'
import { LoopWatchdog, healthz, readyz } from './health.js'
import { EXPOSITION_CONTENT_TYPE } from './metrics.js'
import { ProcessStats } from './process-stats.js'
import { RateWindow } from './rates.js'
import { type EndpointRow, serializeEndpoints, serializeHealthz, serializeServices } from './serialize.js'
import { buildStats } from './stats.js'
import { STATS_PAGE, STATS_PAGE_CSP } from './stats-page.js'
import { serializeStats } from './stats-serialize.js'

export const DEFAULT_HEALTHZ_BIND_ADDRESS: string = DEFAULTS.healthzBindAddress
export const DEFAULT_METRICS_BIND_ADDRESS: string = DEFAULTS.metricsBindAddress

export interface BindAddress { host: string, port: number }

/**
 * `IP:PORT` or `[IPv6]:PORT` as kube-proxy takes it. '' means "disabled" and yields null;
 * port 0 binds an ephemeral port (tests).
 */
export function parseBindAddress (text: string, flag: string): BindAddress | null {
  if (text === '') return null
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text)
  const port = Number(m?.[3])
  if (m === null || port > 65535) throw new ConfigError(`${flag}: expected IP:PORT (or "" to disable), got "${text}"`)
  const host = m[1] ?? m[2] ?? ''
  return { host: host === '' ? '0.0.0.0' : host, port }
}

/** Loopback-only is the safe default: /metrics and /v1 reveal topology and traffic. */
export function isLoopback (host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)
}

export interface AdminServerOptions {
  proxy: ServiceProxy
  /** Freshness of whatever feeds the proxy. Default: apiHealth (library use: applied = current). */
  health?: () => SourceHealth
  /** /healthz, /livez, /readyz. '' or undefined: no separate health server. */
  healthzBindAddress?: string
  /** /metrics, /v1/services, /v1/endpoints, /v1/stats, the stats page at / (and the health paths). '' or undefined: disabled. */
  metricsBindAddress?: string
  /** Log one line per connection end (--access-log). */
  accessLog?: boolean
  /**
   * --healthz-max-loop-delay in ms: /healthz answers 503 while the event loop is blocked longer
   * than this (health.ts LoopWatchdog). Default DEFAULTS.healthzMaxLoopDelayMs; 0: off.
   */
  maxLoopDelayMs?: number
  logger?: Logger
}

export interface AdminServer {
  /** `http://host:port` actually bound, or null when disabled (port 0 resolved). */
  readonly healthzUrl: string | null
  readonly metricsUrl: string | null
  /** Shutdown has begun: /readyz answers 503 from now on. */
  shuttingDown (): void
  close (): Promise<void>
}

type Route = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>

/**
 * Starts the admin HTTP servers: one per distinct bind address. When both addresses are the
 * same, one server answers every path. Rejects with AdminListenError when a port cannot be bound
 * (nothing is left listening then).
 */
export async function createAdminServer (opts: AdminServerOptions): Promise<AdminServer> {
  const { proxy } = opts
  const log = opts.logger ?? pino({ level: 'silent' })
  const health = opts.health ?? (() => apiHealth(proxy.table.revision, proxy.syncStats.lastSyncAt))
  const maxLoopDelayMs = opts.maxLoopDelayMs ?? DEFAULTS.healthzMaxLoopDelayMs
  if (typeof maxLoopDelayMs !== 'number' || !(maxLoopDelayMs >= 0)) throw new ConfigError(`maxLoopDelayMs: expected a duration in ms >= 0, got ${String(maxLoopDelayMs)}`)
  const proc = new ProcessStats()
  const rates = new RateWindow()
  const watchdog = maxLoopDelayMs > 0 ? new LoopWatchdog(maxLoopDelayMs, log) : null
  let stopping = false

  const send = (res: ServerResponse, status: number, type: string, body: string): void => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
    res.end(body)
  }
  const healthRoutes: Record<string, Route> = {
    '/healthz': (_req, res) => {
      const a = healthz(health(), Date.now(), watchdog?.blocked() ?? false)
      send(res, a.status, 'application/json', serializeHealthz(a.body))
    },
    '/livez': (_req, res) => { send(res, 200, 'text/plain; charset=utf-8', 'ok\n') },
    '/readyz': (_req, res) => {
      const a = readyz(health(), stopping, proxy.listenersInError())
      send(res, a.status, 'text/plain; charset=utf-8', a.body)
    },
  }
  const allRoutes: Record<string, Route> = {
    ...healthRoutes,
    '/metrics': async (_req, res) => {
      send(res, 200, EXPOSITION_CONTENT_TYPE, await renderMetrics({ proxy, health, process: proc }))
    },
    '/v1/services': (_req, res) => {
      send(res, 200, 'application/json', serializeServices({ revision: proxy.table.revision, services: proxy.status() }))
    },
    '/v1/endpoints': (_req, res) => {
      send(res, 200, 'application/json', serializeEndpoints({ revision: proxy.table.revision, endpoints: endpointRows(proxy) }))
    },
    '/v1/stats': (_req, res) => {
      rates.begin()
      send(res, 200, 'application/json', serializeStats(buildStats(proxy, health(), rates)))
    },
    // The stats page: it polls /v1/stats.
    '/': (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-security-policy': STATS_PAGE_CSP, 'x-content-type-options': 'nosniff' })
      res.end(STATS_PAGE)
    },
    // kube-proxy's metrics server answers this too; scripts probe it.
    '/proxyMode': (_req, res) => { send(res, 200, 'text/plain; charset=utf-8', 'userspace') },
  }

  const hz = parseBindAddress(opts.healthzBindAddress ?? '', '--healthz-bind-address')
  const mx = parseBindAddress(opts.metricsBindAddress ?? '', '--metrics-bind-address')
  const shared = hz !== null && mx !== null && hz.host === mx.host && hz.port === mx.port && hz.port !== 0
  const started: Server[] = []
  const close = async (): Promise<void> => {
    proc.close()
    watchdog?.close()
    detachAccessLog()
    await Promise.all(started.map((s) => new Promise<void>((resolve) => {
      s.close(() => resolve())
      s.closeAllConnections() // keep-alive scrapers must not hold the exit
    })))
  }
  const detachAccessLog = opts.accessLog === true ? attachAccessLog(proxy, log) : () => {}

  const start = async (addr: BindAddress, routes: Record<string, Route>, what: string, flag: string): Promise<string> => {
    const server = createServer((req, res) => { void handle(routes, req, res, log) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        // Node's message repeats code and address; keep one short reason.
        const why = err.code === 'EADDRINUSE' ? 'address already in use' : err.code === 'EADDRNOTAVAIL' ? 'address not available on this host' : err.code === 'EACCES' ? 'permission denied' : err.message
        reject(new AdminListenError(`${what}: cannot listen on ${fmt(addr.host, addr.port)} (${flag}): ${why}${err.code !== undefined ? ` (${err.code})` : ''}`, { cause: err }))
      })
      server.listen(addr.port, addr.host, () => resolve())
    })
    server.on('error', (err) => { log.error({ err: err.message, server: what }, 'admin server error') })
    started.push(server)
    const a = server.address()
    const url = `http://${fmt(addr.host, typeof a === 'object' && a !== null ? a.port : addr.port)}`
    if (!isLoopback(addr.host)) log.warn({ server: what, address: url }, 'admin server bound to a non-loopback address: reachable from the network')
    log.info({ server: what, address: url }, 'admin server listening')
    return url
  }

  try {
    const metricsUrl = mx === null ? null : await start(mx, allRoutes, shared ? 'healthz and metrics' : 'metrics', '--metrics-bind-address')
    const healthzUrl = hz === null ? null : shared ? metricsUrl : await start(hz, healthRoutes, 'healthz', '--healthz-bind-address')
    return {
      healthzUrl,
      metricsUrl,
      shuttingDown: () => { stopping = true },
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}

async function handle (routes: Record<string, Route>, req: IncomingMessage, res: ServerResponse, log: Logger): Promise<void> {
  const url = req.url ?? '/'
  const q = url.indexOf('?')
  const route = routes[q < 0 ? url : url.slice(0, q)]
  if (route === undefined) {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end(`not found; paths: ${Object.keys(routes).join(' ')}\n`)
    return
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n')
    return
  }
  try {
    await route(req, res)
  } catch (err) {
    log.error({ err: (err as Error).message, path: url }, 'admin request failed')
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' })
    res.end('internal error\n')
  }
}

/** Endpoint rows with the counters /v1/services leaves out (affinity hits, UDP datagrams). */
function endpointRows (proxy: ServiceProxy): EndpointRow[] {
  const rows: EndpointRow[] = []
  const rts = [...proxy.dataplane.runtimes.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  for (const rt of rts) {
    for (const b of rt.endpoints) {
      rows.push({
        namespace: rt.namespace, service: rt.service, port: rt.portLabel, protocol: rt.state.port.protocol,
        endpoint: b.key, nodeName: b.nodeName, ready: b.ready,
        active: b.active, accepted: b.accepted, dialFailures: b.dialFailures, bytesUp: b.bytesUp, bytesDown: b.bytesDown,
        affinityHits: b.affinityHits, udpDatagramsUp: b.udpDatagramsUp, udpDatagramsDown: b.udpDatagramsDown,
        eligible: rt.inRotation(b), ejected: b.ejected, ejectedUntil: b.ejectedUntil, ejections: b.ejectionsTotal, consecutiveFailures: b.consecutiveFailures, check: b.check,
      })
    }
  }
  return rows
}

function fmt (host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`
}
