// Redis source benchmarks (issue #3). Run: npm run build && node dist/bench/redis.js [--quick] [--redis URL]
//
//  convergence  apply() returns after an endpoint change → first new connection routed to the new
//               endpoint on every daemon; p50/p99 over N changes, with 1 and with 3 daemons.
//  scale        10,000 services × 10 endpoints: write time, a fresh daemon's full load time and
//               RSS, then one endpoint change at that size (apply time, and until served).
//
// Daemons are embedded proxies in this process (the library API), each with its own Redis
// connections, so the convergence figures include the writer sharing their event loop.

import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { type Server, connect, createServer } from 'node:net'
import { cpus } from 'node:os'
import { pathToFileURL } from 'node:url'
import { type ServiceProxy, RedisStore, type RedisSource, createProxy, watchRedis } from '../lib/index.js'
import { freePortOn } from './external.js'

export interface BenchOptions {
  /** Endpoint changes per convergence run (200). */
  changes: number
  services: number
  endpointsPerService: number
  /** Use this Redis (it will be FLUSHed per run!) instead of starting a private redis-server. */
  redisUrl?: string
}

export interface BenchRow { metric: string, value: string, n: number }

export const FULL: BenchOptions = { changes: 200, services: 10_000, endpointsPerService: 10 }
export const QUICK: BenchOptions = { changes: 20, services: 300, endpointsPerService: 10 }

const now = (): number => performance.now()
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

function pct (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? Number.NaN
}

async function startRedisServer (): Promise<{ url: string, stop: () => void }> {
  const port = await freePortOn('127.0.0.1')
  const p: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  await new Promise<void>((resolve, reject) => {
    p.stdout?.on('data', (c: Buffer) => { out += c.toString(); if (out.includes('Ready to accept connections')) resolve() })
    p.once('exit', () => reject(new Error(`redis-server exited: ${out}`)))
  })
  p.stdout?.resume()
  return { url: `redis://127.0.0.1:${port}`, stop: () => { p.kill('SIGKILL') } }
}

async function nameServer (name: string, host: string): Promise<{ server: Server, port: number }> {
  const server = createServer((s) => { s.on('error', () => {}); s.end(name) }).listen(0, host)
  await once(server, 'listening')
  const a = server.address()
  return { server, port: a !== null && typeof a === 'object' ? a.port : 0 }
}

function ask (host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    let body = ''
    const s = connect({ host, port })
    s.on('data', (c) => { body += c.toString() })
    s.on('error', () => resolve(''))
    s.on('close', () => resolve(body))
  })
}

const svc = (name: string, port = 80): unknown => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { ports: [{ port }] } })
const eps = (name: string, ips: string[], port: number): unknown => ({ apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: 'default' }, subsets: [{ addresses: ips.map((ip) => ({ ip })), ports: [{ port }] }] })

async function daemon (url: string): Promise<{ proxy: ServiceProxy, source: RedisSource }> {
  const proxy = createProxy({ ephemeralPorts: true })
  const source = await watchRedis(proxy, { url })
  await source.synced()
  return { proxy, source }
}

async function convergence (url: string, daemons: number, changes: number): Promise<BenchRow[]> {
  const backends = [await nameServer('a', '127.0.6.1'), await nameServer('b', '127.0.6.2')]
  const store = new RedisStore({ url })
  await store.apply([svc('conv'), eps('conv', ['127.0.6.1'], backends[0]?.port ?? 0)])
  const ds = await Promise.all(Array.from({ length: daemons }, () => daemon(url)))
  const times: number[] = []
  try {
    for (let i = 1; i <= changes; i++) {
      const to = i % 2
      const want = to === 0 ? 'a' : 'b'
      await store.apply([eps('conv', [`127.0.6.${to + 1}`], backends[to]?.port ?? 0)])
      const t0 = now()
      // Every daemon must route a new connection to the new endpoint; the slowest one counts.
      await Promise.all(ds.map(async ({ proxy }) => {
        for (;;) {
          try {
            const a = proxy.address('default/conv', 80)
            if (await ask(a.address, a.port) === want) return
          } catch { /* not served yet */ }
          await sleep(0)
        }
      }))
      times.push(now() - t0)
    }
  } finally {
    for (const d of ds) { await d.source.close(); await d.proxy.close() }
    await store.close()
    for (const b of backends) b.server.close()
  }
  return [
    { metric: `convergence p50, ${daemons} daemon${daemons > 1 ? 's' : ''}`, value: `${pct(times, 50).toFixed(2)} ms`, n: changes },
    { metric: `convergence p99, ${daemons} daemon${daemons > 1 ? 's' : ''}`, value: `${pct(times, 99).toFixed(2)} ms`, n: changes },
  ]
}

async function scale (url: string, services: number, per: number, changesAtScale: number): Promise<BenchRow[]> {
  const store = new RedisStore({ url })
  const objects: unknown[] = []
  for (let i = 0; i < services; i++) {
    objects.push(svc(`s${i}`), eps(`s${i}`, Array.from({ length: per }, (_, j) => `10.${(i >> 8) & 255}.${i & 255}.${j + 1}`), 8080))
  }
  let t0 = now()
  const first = await store.apply(objects, 'scale')
  const writeMs = now() - t0

  t0 = now()
  const d = await daemon(url)
  const loadMs = now() - t0
  const rss = process.memoryUsage().rss
  if (d.source.revision !== first.revision || d.proxy.table.services.size !== services) throw new Error('scale: daemon did not load everything')

  t0 = now()
  const res = await store.apply([eps('s1', ['10.255.255.1'], 9090)])
  const applyMs = now() - t0
  while (d.source.revision < res.revision) await sleep(0)
  const servedMs = now() - t0

  // Issue 17.3: at that size, apply() start → the first new connection reaching the new endpoint.
  const backends = [await nameServer('a', '127.0.6.1'), await nameServer('b', '127.0.6.2')]
  await store.apply([svc('conv'), eps('conv', ['127.0.6.1'], backends[0]?.port ?? 0)])
  const routed: number[] = []
  for (let i = 1; i <= changesAtScale; i++) {
    const to = i % 2
    const t1 = now()
    await store.apply([eps('conv', [`127.0.6.${to + 1}`], backends[to]?.port ?? 0)])
    for (;;) {
      try {
        const a = d.proxy.address('default/conv', 80)
        if (await ask(a.address, a.port) === (to === 0 ? 'a' : 'b')) break
      } catch { /* not served yet */ }
      await sleep(0)
    }
    routed.push(now() - t1)
  }
  for (const b of backends) b.server.close()
  await d.source.close()
  await d.proxy.close()
  await store.close()
  const label = `${services.toLocaleString('en-US')} svc × ${per} ep`
  return [
    { metric: `write all (one apply), ${label}`, value: `${writeMs.toFixed(0)} ms`, n: 1 },
    { metric: `daemon full load (list + serve), ${label}`, value: `${loadMs.toFixed(0)} ms`, n: 1 },
    // The whole bench process (writer included): an upper bound for one daemon.
    { metric: 'RSS after load (bench process, writer included)', value: `${(rss / 2 ** 20).toFixed(0)} MiB`, n: 1 },
    { metric: 'one endpoint change: apply() at that size', value: `${applyMs.toFixed(1)} ms`, n: 1 },
    { metric: 'one endpoint change: apply start → daemon applied', value: `${servedMs.toFixed(1)} ms`, n: 1 },
    { metric: `at that size: apply start → first connection to the new endpoint, p50`, value: `${pct(routed, 50).toFixed(2)} ms`, n: routed.length },
    { metric: `at that size: apply start → first connection to the new endpoint, p99`, value: `${pct(routed, 99).toFixed(2)} ms`, n: routed.length },
  ]
}

export async function runBench (opts: BenchOptions): Promise<BenchRow[]> {
  const own = opts.redisUrl === undefined ? await startRedisServer() : null
  const url = opts.redisUrl ?? own?.url ?? ''
  const rows: BenchRow[] = []
  try {
    for (const n of [1, 3]) {
      await flush(url)
      rows.push(...await convergence(url, n, opts.changes))
    }
    await flush(url)
    rows.push(...await scale(url, opts.services, opts.endpointsPerService, Math.min(100, opts.changes)))
  } finally {
    own?.stop()
  }
  return rows
}

async function flush (url: string): Promise<void> {
  const s = new RedisStore({ url })
  await s.client.call('FLUSHDB', [])
  await s.close()
}

export function formatTable (rows: BenchRow[]): string {
  const w0 = Math.max(6, ...rows.map((r) => r.metric.length))
  const w1 = Math.max(5, ...rows.map((r) => r.value.length))
  const line = (a: string, b: string, c: string): string => `${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}`
  return [line('metric', 'value', 'n'), line('-'.repeat(w0), '-'.repeat(w1), '---'), ...rows.map((r) => line(r.metric, r.value, String(r.n)))].join('\n')
}

async function cli (): Promise<void> {
  const argv = process.argv.slice(2)
  const quick = argv.includes('--quick')
  const i = argv.indexOf('--redis')
  const opts: BenchOptions = { ...(quick ? QUICK : FULL), ...(i >= 0 && argv[i + 1] !== undefined ? { redisUrl: argv[i + 1] } : {}) }
  process.stdout.write(`svcproxy redis bench${quick ? ' (quick)' : ''}: ${cpus().length} cores, node ${process.version}\n`)
  const rows = await runBench(opts)
  process.stdout.write(`${formatTable(rows)}\n`)
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  cli().then(() => process.exit(0), (err: unknown) => {
    process.stderr.write(`bench/redis: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  })
}
