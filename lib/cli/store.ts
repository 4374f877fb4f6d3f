// The Redis commands: `apply`, `delete`, `get` (the writer's CLI), and the `run --redis` source.

import type { Logger } from 'pino'
import { ConfigError } from '../errors.js'
import type { KubeObject } from '../model/types.js'
import type { ServiceProxy } from '../api/service-proxy.js'
import { parseRef } from '../table/refs.js'
import type { SourceHealth } from '../sources/health.js'
import { DEFAULT_SYNC_PERIOD_MS, watchRedis } from '../sources/redis/source.js'
import { parseRedisUrl, redactUrl, type RedisTlsFiles, redisTlsOptions } from '../store/connect.js'
import { DEFAULT_PREFIX } from '../store/schema.js'
import { RedisStore, type StoreWriteResult } from '../store/store.js'
import { parseDuration } from '../util/duration.js'
import { type FlagValues, str } from './flags.js'

export interface StoreIo {
  out: (line: string) => void
  err: (line: string) => void
}

/** --redis, else REDIS_URL; validated here so a typo fails before anything starts. */
export function redisUrlOf (values: FlagValues, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const url = str(values, 'redis') ?? (env.REDIS_URL !== undefined && env.REDIS_URL !== '' ? env.REDIS_URL : undefined)
  if (url !== undefined) parseRedisUrl(url)
  return url
}

/** --redis-ca-file, --redis-cert-file, --redis-key-file: read and checked before anything connects. */
export function redisTlsOf (values: FlagValues, url = redisUrlOf(values)): RedisTlsFiles {
  const files: RedisTlsFiles = { caFile: str(values, 'redis-ca-file'), certFile: str(values, 'redis-cert-file'), keyFile: str(values, 'redis-key-file') }
  if (url !== undefined) redisTlsOptions(url, files)
  return files
}

function openStore (values: FlagValues): RedisStore {
  const url = redisUrlOf(values)
  if (url === undefined) throw new ConfigError('--redis URL (or REDIS_URL) is required')
  return new RedisStore({
    url,
    prefix: str(values, 'redis-key-prefix') ?? DEFAULT_PREFIX,
    serviceClusterIPRange: str(values, 'service-cluster-ip-range'),
    serviceNodePortRange: str(values, 'service-node-port-range'),
    failFast: true,
    tls: redisTlsOf(values),
  })
}

/** `service/default/web` → `service/web`, as kubectl prints it (namespace shown when not default). */
function shown (key: string): string {
  const [kind = '', ns = '', name = ''] = key.split('/')
  return `${kind.toLowerCase()}/${name}${ns === 'default' ? '' : ` -n ${ns}`}`
}

function report (res: StoreWriteResult, io: StoreIo): number {
  for (const w of res.warnings) io.err(`warning: ${w}`)
  let missing = 0
  for (const c of res.changes) {
    if (c.action === 'not found') {
      missing++
      io.err(`Error: ${shown(c.key)} not found`)
    } else {
      io.out(`${shown(c.key)} ${c.action}`)
    }
  }
  io.err(`revision ${res.revision}`)
  return missing > 0 ? 1 : 0
}

export async function applyCommand (values: FlagValues, positionals: string[], io: StoreIo): Promise<number> {
  const file = str(values, 'filename') ?? positionals[0]
  if (file === undefined) throw new ConfigError('-f FILE is required')
  const store = openStore(values)
  try {
    return report(await store.applyFile(file), io)
  } finally {
    await store.close()
  }
}

export async function deleteCommand (values: FlagValues, positionals: string[], io: StoreIo): Promise<number> {
  const file = str(values, 'filename')
  if (file === undefined && positionals.length === 0) throw new ConfigError('-f FILE or "service|endpoints|endpointslice|pod NAMESPACE/NAME" is required')
  const refs = file === undefined ? [parseRef(positionals.join(' '))] : null
  const store = openStore(values)
  try {
    return report(refs === null ? await store.deleteFile(file ?? '') : await store.delete(refs), io)
  } finally {
    await store.close()
  }
}

const GET_KINDS: Record<string, KubeObject['kind']> = {
  services: 'Service', service: 'Service', svc: 'Service',
  endpoints: 'Endpoints', ep: 'Endpoints',
  endpointslices: 'EndpointSlice', endpointslice: 'EndpointSlice',
  pods: 'Pod', pod: 'Pod', po: 'Pod',
}

export async function getCommand (values: FlagValues, positionals: string[], io: StoreIo): Promise<number> {
  const kind = GET_KINDS[(positionals[0] ?? '').toLowerCase()]
  if (kind === undefined) throw new ConfigError(`expected services, endpoints, endpointslices or pods, got "${positionals[0] ?? ''}"`)
  const output = str(values, 'output') ?? ''
  if (output !== '' && output !== 'json') throw new ConfigError(`--output: expected json (or nothing for a table), got "${output}"`)
  const ns = str(values, 'namespace')
  const store = openStore(values)
  let listed
  try {
    listed = await store.list()
  } finally {
    await store.close()
  }
  for (const b of listed.bad) io.err(`warning: skipping bad record ${b.key}: ${b.error.split('\n').slice(-1)[0] ?? ''}`)
  const rows = listed.objects.filter((o) => o.obj.kind === kind && (ns === undefined || o.obj.namespace === ns))
  if (output === 'json') {
    io.out(JSON.stringify({ apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: String(listed.revision) }, items: rows.map((r) => JSON.parse(r.text) as unknown) }, null, 2))
    return 0
  }
  if (rows.length === 0) {
    io.err(`No resources found${ns === undefined ? '' : ` in ${ns} namespace`}.`)
    return 0
  }
  const table = rows.map((r) => columns(r.obj))
  const head = headers(kind)
  const all = ns === undefined ? [['NAMESPACE', ...head], ...table] : [head, ...table.map((c) => c.slice(1))]
  for (const line of align(all)) io.out(line)
  return 0
}

function headers (kind: KubeObject['kind']): string[] {
  switch (kind) {
    case 'Service': return ['NAME', 'TYPE', 'CLUSTER-IP', 'EXTERNAL-IP', 'PORT(S)']
    case 'Endpoints': return ['NAME', 'ENDPOINTS']
    case 'EndpointSlice': return ['NAME', 'ADDRESSTYPE', 'PORTS', 'ENDPOINTS']
    case 'Pod': return ['NAME', 'READY', 'STATUS', 'IP', 'NODE']
  }
}

/** One row, namespace first (dropped by the caller under -n). */
function columns (o: KubeObject): string[] {
  const list = (xs: string[]): string => (xs.length === 0 ? '<none>' : xs.length > 3 ? `${xs.slice(0, 3).join(',')} + ${xs.length - 3} more...` : xs.join(','))
  switch (o.kind) {
    case 'Service': {
      const ext = [...o.externalIPs, ...o.loadBalancerIPs]
      const ports = o.ports.map((p) => `${p.port}${p.nodePort !== 0 ? `:${p.nodePort}` : ''}/${p.protocol}`)
      return [o.namespace, o.name, o.type, o.type === 'ExternalName' ? '<none>' : o.clusterIP, o.type === 'ExternalName' ? o.externalName : ext.length === 0 ? '<none>' : ext.join(','), ports.length === 0 ? '<none>' : ports.join(',')]
    }
    case 'Endpoints': {
      const eps: string[] = []
      for (const s of o.subsets) for (const a of s.addresses) for (const p of s.ports) eps.push(a.ip.includes(':') ? `[${a.ip}]:${p.port}` : `${a.ip}:${p.port}`)
      return [o.namespace, o.name, list(eps)]
    }
    case 'EndpointSlice':
      return [o.namespace, o.name, o.addressType, o.ports.length === 0 ? '<unset>' : o.ports.map((p) => String(p.port)).join(','), list(o.endpoints.flatMap((e) => e.addresses))]
    case 'Pod':
      return [o.namespace, o.name, String(o.ready), o.terminating ? 'Terminating' : o.phase === '' ? 'Unknown' : o.phase, o.podIP === '' ? '<none>' : o.podIP, o.nodeName === '' ? '<none>' : o.nodeName]
  }
}

function align (rows: string[][]): string[] {
  const widths: number[] = []
  for (const r of rows) r.forEach((c, i) => { widths[i] = Math.max(widths[i] ?? 0, c.length) })
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3))).join(''))
}

/** What `run` needs of a source: the same shape the file source offers. */
export interface RunSource {
  describe: string
  health: () => SourceHealth
  reload: () => Promise<boolean>
  close: () => void
}

/** `run --redis`: follow the store; never fails because Redis is down (it serves and retries). */
export async function startRedisSource (url: string, proxy: ServiceProxy, values: FlagValues, logger: Logger): Promise<RunSource> {
  const period = str(values, 'sync-period')
  const source = await watchRedis(proxy, {
    url,
    logger,
    prefix: str(values, 'redis-key-prefix') ?? DEFAULT_PREFIX,
    syncPeriodMs: period === undefined ? DEFAULT_SYNC_PERIOD_MS : parseDuration(period, '--sync-period'),
    stateFile: str(values, 'state-file'),
    tls: redisTlsOf(values),
  })
  return {
    describe: redactUrl(url),
    health: () => source.health(),
    reload: () => { source.resync(); return Promise.resolve(true) },
    close: () => { void source.close() },
  }
}
