import { ConfigError, UnreachableError } from '../errors.js'
import type { EndpointStatus, FrontendStatus, ServicePortStatus } from '../api/service-proxy.js'
import { parseBindAddress } from '../admin/server.js'
import type { ServicesDoc } from '../admin/serialize.js'
import type { StatsDoc } from '../admin/stats.js'
import { type FlagValues, str } from './flags.js'
import { type Terminal, watchStatus } from './status-watch.js'

/** Where the daemon's /v1 API is: --server, else the --metrics-bind-address it was started with. */
export function statusBaseUrl (values: FlagValues): string {
  const server = str(values, 'server')
  if (server !== undefined && server !== '') {
    if (!/^https?:\/\/[^/]/.test(server) || !URL.canParse(server)) throw new ConfigError(`--server: expected the daemon's admin URL, such as http://127.0.0.1:10249, got "${server}"`)
    return server.replace(/\/+$/, '')
  }
  const addr = parseBindAddress(str(values, 'metrics-bind-address') ?? '', '--metrics-bind-address')
  if (addr === null) throw new ConfigError('--metrics-bind-address is empty: give --server URL')
  // A daemon bound to every address is reached on loopback.
  const host = addr.host === '0.0.0.0' ? '127.0.0.1' : addr.host === '::' ? '::1' : addr.host
  return `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`
}

export async function fetchServices (base: string, timeoutMs = 5000): Promise<ServicesDoc> {
  const doc = await getJson(base, '/v1/services', timeoutMs) as ServicesDoc
  if (typeof doc !== 'object' || doc === null || !Array.isArray(doc.services)) throw new UnreachableError(`${base}/v1/services: not a svcproxy /v1/services answer`)
  return doc
}

/** /v1/stats: what --watch shows (the stats page's JSON). */
export async function fetchStats (base: string, timeoutMs = 5000): Promise<StatsDoc> {
  const doc = await getJson(base, '/v1/stats', timeoutMs) as StatsDoc
  if (typeof doc !== 'object' || doc === null || !Array.isArray(doc.services) || typeof doc.totals !== 'object') throw new UnreachableError(`${base}/v1/stats: not a svcproxy /v1/stats answer (a daemon older than --watch?)`)
  return doc
}

async function getJson (base: string, path: string, timeoutMs: number): Promise<unknown> {
  const url = `${base}${path}`
  let res: Response
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause
    const why = cause?.code ?? (err as Error).message
    throw new UnreachableError(`cannot reach svcproxy at ${base}: ${why} (is it running? set --metrics-bind-address or --server)`, { cause: err })
  }
  if (res.status !== 200) throw new UnreachableError(`${url}: HTTP ${res.status}${res.status === 404 ? ' (is this a svcproxy daemon\'s metrics address?)' : ''}`)
  // Another server at that address (a web page, another exporter): say so, not "Unexpected token".
  const text = await res.text()
  try {
    return JSON.parse(text)
  } catch {
    throw new UnreachableError(`${url}: not a svcproxy daemon (the answer is not JSON${contentTypeOf(res)}); is --server or --metrics-bind-address the daemon's metrics address?`)
  }
}

function contentTypeOf (res: Response): string {
  const type = res.headers.get('content-type')
  return type === null ? '' : `: ${type.split(';')[0] ?? ''}`
}

/** `svcproxy status`: the running daemon's service ports and endpoints, as tables. */
export async function status (values: FlagValues, out: (line: string) => void, term: Terminal = process.stdout): Promise<number> {
  const base = statusBaseUrl(values)
  if (values.watch === true) return await watchStatus(base, async () => await fetchStats(base), term)
  const doc = await fetchServices(base)
  for (const l of renderStatus(doc)) out(l)
  return 0
}

export function renderStatus (doc: ServicesDoc): string[] {
  const sps = doc.services
  const active = sps.reduce((n, s) => n + s.active, 0)
  const broken = listenersInError(sps)
  const errorsNote = broken.length === 0 ? '' : `, ${broken.length} listener${broken.length === 1 ? '' : 's'} in error (not ready)`
  const lines = [`revision ${doc.revision}, ${sps.length} service port${sps.length === 1 ? '' : 's'}, ${active} active connection${active === 1 ? '' : 's'}${errorsNote}`, '']
  if (sps.length === 0) return [...lines, 'No service ports.']
  lines.push(...table(
    ['NAMESPACE', 'NAME', 'PORT', 'PROTOCOL', 'TYPE', 'ADDRESSES', 'ENDPOINTS', 'ACTIVE', 'ACCEPTED', 'DIAL-FAILS'],
    sps.map((s) => [s.namespace, s.name, s.port, protocolCell(s), s.type, addresses(s.frontends), endpointsCell(s), String(s.active), String(s.accepted), String(s.dialFailures)]),
  ))
  const now = Date.now()
  const eps = sps.flatMap((s) => s.endpoints.map((e) => [`${s.namespace}/${s.name}`, s.port, e.endpoint, e.nodeName === '' ? '<none>' : e.nodeName, String(e.ready), healthCell(e, now), String(e.active), String(e.accepted), String(e.dialFailures)]))
  if (eps.length > 0) {
    lines.push('')
    lines.push(...table(['SERVICE', 'PORT', 'ENDPOINT', 'NODE', 'READY', 'HEALTH', 'ACTIVE', 'ACCEPTED', 'DIAL-FAILS'], eps))
  }
  const faults = sps.flatMap((s) => (s.faults ?? []).map((f) => [`${s.namespace}/${s.name}`, s.port, f.name, f.type, f.stream, String(f.toxicity), f.scope.endpoint ?? (f.scope.port === undefined ? 'service' : 'port'), Object.entries(f.attributes).map(([k, v]) => `${k}=${v}`).join(' ')]))
  if (faults.length > 0) {
    lines.push('', 'Faults (proxy.faults, or the Toxiproxy API):')
    lines.push(...table(['SERVICE', 'PORT', 'TOXIC', 'TYPE', 'STREAM', 'TOXICITY', 'SCOPE', 'ATTRIBUTES'], faults))
  }
  if (broken.length > 0) {
    lines.push('', 'Listeners in error (could not bind; retried with backoff, /readyz answers 503 meanwhile):')
    lines.push(...table(['SERVICE', 'PORT', 'ADDRESS', 'KIND', 'ERROR'], broken))
  }
  return lines
}

/** `TCP`, or `TCP+proxy-v2` when its endpoints get a PROXY protocol header (docs/proxy-protocol.md). */
function protocolCell (s: ServicePortStatus): string {
  const pp = s.proxyProtocol as string | undefined // absent from an older daemon's answer
  return pp === undefined || pp === 'none' ? s.protocol : `${s.protocol}+proxy-${pp}`
}

/** One row per frontend that could not bind: service, port, address, kind, error. */
function listenersInError (sps: ServicePortStatus[]): string[][] {
  return sps.flatMap((s) => s.frontends.filter((f) => f.state === 'error').map((f) => {
    const host = f.address.includes(':') ? `[${f.address}]` : f.address
    return [`${s.namespace}/${s.name}`, s.port, `${host}:${f.port}`, f.kind, f.error]
  }))
}

function addresses (fes: FrontendStatus[]): string {
  if (fes.length === 0) return '<none>'
  return fes.map((f) => {
    const host = f.address.includes(':') ? `[${f.address}]` : f.address
    const port = f.state === 'listening' ? f.boundPort : f.port
    return f.state === 'listening' ? `${host}:${port}` : `${host}:${port}(${f.state})`
  }).join(',')
}

/**
 * An endpoint's health in a word or two (docs/health.md): `ejected (12s left, 2 ejections)`,
 * `check-down`, `check-pending`, `3 fails in a row`, or `ok`. Older daemons send none of it: `-`.
 */
export function healthCell (e: EndpointStatus, now: number): string {
  if (e.ejected === undefined) return '-'
  if (e.ejected) return `ejected (${Math.max(0, Math.ceil((e.ejectedUntil - now) / 1000))}s left, ${e.ejections} ejection${e.ejections === 1 ? '' : 's'})`
  if (e.check === 'down' || e.check === 'pending') return `check-${e.check}${e.eligible ? ' (kept: none passes)' : ''}`
  if (e.consecutiveFailures > 0) return `${e.consecutiveFailures} fail${e.consecutiveFailures === 1 ? '' : 's'} in a row`
  return e.check === 'up' ? 'ok (check up)' : 'ok'
}

function endpointsCell (s: ServicePortStatus): string {
  const ready = s.endpoints.filter((e) => e.ready).length
  return s.endpoints.length === 0 ? '<none>' : `${ready}/${s.endpoints.length}`
}

/** kubectl's layout: left-aligned columns, three spaces apart, no trailing spaces. */
function table (head: string[], rows: string[][]): string[] {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (r: string[]): string => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd((w[i] ?? 0) + 3))).join('')
  return [line(head), ...rows.map(line)]
}
