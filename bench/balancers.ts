// The balancing algorithms of issue 14 under real traffic, through in-process proxies on loopback:
//  1. least-connections with one endpoint 10x slower than the others: the slow endpoint's share of
//     requests (round-robin and p2c for comparison). Target: below 15%.
//  2. hash: two proxies with the same endpoints (listed in opposite orders, one by the annotation,
//     one by its default) map N client addresses (distinct 127.x.y.z sources) identically.
//  3. hash: removing one of 10 endpoints moves at most 12% of the clients (ideal: 10%).
// Every request is a new TCP connection; an endpoint answers with its name and closes.
//   node dist/bench/balancers.js [--quick] [--clients 10000] [--out FILE]
import { once } from 'node:events'
import { mkdirSync, writeFileSync } from 'node:fs'
import { createServer, connect, type Server } from 'node:net'
import { cpus, loadavg } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { type Algorithm, createProxy, type ServiceProxy } from '../lib/index.js'

interface Ep { ip: string, port: number, name: string, server: Server }

/** An endpoint that answers each connection with its name after `delayMs`, then closes. */
async function endpoint (ip: string, name: string, delayMs: number): Promise<Ep> {
  const server = createServer((s) => {
    s.on('error', () => {})
    if (delayMs <= 0) s.end(name)
    else setTimeout(() => s.end(name), delayMs)
  })
  server.listen(0, ip)
  await once(server, 'listening')
  const a = server.address()
  if (a === null || typeof a === 'string') throw new Error('no address')
  return { ip, port: a.port, name, server }
}

function objects (name: string, clusterIP: string, eps: Ep[], annotations: Record<string, string> = {}): unknown[] {
  return [
    { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default', annotations }, spec: { clusterIP, ports: [{ port: 80, protocol: 'TCP' }] } },
    { apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: 'default' }, subsets: eps.map((e) => ({ addresses: [{ ip: e.ip }], ports: [{ port: e.port, protocol: 'TCP' }] })) },
  ]
}

/** One request: connect (from `localAddress`), read until the endpoint closes; its name. */
async function request (host: string, port: number, localAddress?: string): Promise<string> {
  return await new Promise((resolve) => {
    const chunks: Buffer[] = []
    const s = connect({ host, port, localAddress })
    s.on('data', (c: Buffer) => chunks.push(c))
    s.on('error', (e: NodeJS.ErrnoException) => resolve(`ERR:${e.code ?? e.message}`))
    s.on('close', () => { if (!s.errored) resolve(Buffer.concat(chunks).toString()) })
  })
}

/** Runs `jobs` with at most `concurrency` in flight. */
async function pool<T> (n: number, concurrency: number, job: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(n)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, async () => {
    while (next < n) {
      const i = next++
      out[i] = await job(i)
    }
  }))
  return out
}

function proxy (opts: { loadBalancer?: Algorithm, seed?: number } = {}): ServiceProxy {
  return createProxy({ ephemeralPorts: true, logger: pino({ level: 'silent' }), ...opts })
}

export interface SlowShare { algorithm: Algorithm, requests: number, toSlow: number, share: number, errors: number, seconds: number }

/** Closed loop of `requests` over 3 endpoints answering after `fastMs` and one after 10x that. */
async function slowShare (algorithm: Algorithm, requests: number, concurrency: number, fastMs: number): Promise<SlowShare> {
  const eps = [await endpoint('127.0.31.1', 'slow', fastMs * 10), ...await Promise.all([2, 3, 4].map((i) => endpoint(`127.0.31.${i}`, `fast${i}`, fastMs)))]
  const p = proxy({ loadBalancer: algorithm, seed: 1 })
  try {
    await p.apply(objects('lc', '127.96.31.1', eps), '<bench>')
    const a = p.address('default/lc', 80)
    const started = performance.now()
    const got = await pool(requests, concurrency, async () => await request(a.address, a.port))
    const seconds = (performance.now() - started) / 1000
    const toSlow = got.filter((w) => w === 'slow').length
    return { algorithm, requests, toSlow, share: toSlow / requests, errors: got.filter((w) => w.startsWith('ERR')).length, seconds }
  } finally {
    await p.close()
    for (const e of eps) e.server.close()
  }
}

export interface HashFigures {
  clients: number
  endpoints: number
  /** Clients both proxies sent to the same endpoint (of `clients`). */
  identical: number
  /** Clients per endpoint on the first proxy: min and max. */
  spread: [number, number]
  /** After removing one endpoint on both proxies. */
  moved: number
  movedShare: number
  /** Of the moved: clients of the removed endpoint (they must move), and of the others. */
  movedFromRemoved: number
  movedOthers: number
  identicalAfter: number
  errors: number
  /** Dials that failed (timed out on a loaded machine, say) and were retried on the next endpoint: such a client is served elsewhere. */
  dialFailures: number
  seconds: number
}

/** A client source address in 127.100.0.0/16 for client i (octets 1-250). */
const clientIP = (i: number): string => `127.100.${Math.floor(i / 250) + 1}.${(i % 250) + 1}`

async function hashFigures (clients: number, concurrency: number): Promise<HashFigures> {
  const eps = await Promise.all(Array.from({ length: 10 }, (_, i) => endpoint(`127.0.32.${i + 1}`, `e${i + 1}`, 0)))
  const p1 = proxy()
  const p2 = proxy({ loadBalancer: 'hash' })
  const started = performance.now()
  try {
    await p1.apply(objects('h', '127.96.32.1', eps, { 'svcproxy.io/load-balancer': 'hash' }), '<bench>')
    await p2.apply(objects('h', '127.96.32.2', [...eps].reverse()), '<bench>')
    const a1 = p1.address('default/h', 80)
    const a2 = p2.address('default/h', 80)
    const map = async (a: { address: string, port: number }): Promise<string[]> => await pool(clients, concurrency, async (i) => await request(a.address, a.port, clientIP(i)))
    const m1 = await map(a1)
    const m2 = await map(a2)
    const per = new Map<string, number>()
    for (const w of m1) per.set(w, (per.get(w) ?? 0) + 1)
    // The endpoint to remove: the 4th; both proxies drop it.
    const gone = eps[3] as Ep
    const left = eps.filter((e) => e !== gone)
    await p1.apply(objects('h', '127.96.32.1', left, { 'svcproxy.io/load-balancer': 'hash' }), '<bench>')
    await p2.apply(objects('h', '127.96.32.2', [...left].reverse()), '<bench>')
    const n1 = await map(a1)
    const n2 = await map(a2)
    let moved = 0
    let movedFromRemoved = 0
    for (let i = 0; i < clients; i++) {
      if (m1[i] === n1[i]) continue
      moved++
      if (m1[i] === gone.name) movedFromRemoved++
    }
    const all = [...m1, ...m2, ...n1, ...n2]
    return {
      clients,
      endpoints: eps.length,
      identical: m1.filter((w, i) => w === m2[i] && !w.startsWith('ERR')).length,
      spread: [Math.min(...per.values()), Math.max(...per.values())],
      moved,
      movedShare: moved / clients,
      movedFromRemoved,
      movedOthers: moved - movedFromRemoved,
      identicalAfter: n1.filter((w, i) => w === n2[i] && !w.startsWith('ERR')).length,
      errors: all.filter((w) => w.startsWith('ERR')).length,
      dialFailures: (p1.status()[0]?.dialFailures ?? 0) + (p2.status()[0]?.dialFailures ?? 0),
      seconds: (performance.now() - started) / 1000,
    }
  } finally {
    await p1.close()
    await p2.close()
    for (const e of eps) e.server.close()
  }
}

export interface BalancerFigures { slow: SlowShare[], fastMs: number, concurrency: number, hash: HashFigures }

export async function runBalancers (opts: { quick: boolean, clients?: number, log?: (s: string) => void }): Promise<BalancerFigures> {
  const log = opts.log ?? (() => {})
  const requests = opts.quick ? 300 : 3000
  const concurrency = 16
  const fastMs = 5
  const slow: SlowShare[] = []
  for (const alg of ['round-robin', 'least-connections', 'p2c'] as const) {
    const r = await slowShare(alg, requests, concurrency, fastMs)
    log(`${alg}: ${r.toSlow}/${r.requests} to the slow endpoint, ${r.errors} errors, ${r.seconds.toFixed(1)} s`)
    slow.push(r)
  }
  const hash = await hashFigures(opts.clients ?? (opts.quick ? 1000 : 10_000), 64)
  log(`hash: ${hash.identical}/${hash.clients} identical, ${hash.moved} moved, ${hash.errors} errors, ${hash.seconds.toFixed(1)} s`)
  return { slow, fastMs, concurrency, hash }
}

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`
const n = (x: number): string => x.toLocaleString('en-US')

export function report (f: BalancerFigures): string {
  const lc = f.slow.find((s) => s.algorithm === 'least-connections') as SlowShare
  const others = f.slow.filter((s) => s !== lc).map((s) => `${s.algorithm} ${pct(s.share)}`).join(', ')
  const h = f.hash
  const ok = (b: boolean): string => (b ? 'ok' : 'MISS')
  return [
    `least-connections, 4 endpoints, one 10x slower (${f.fastMs} ms vs ${f.fastMs * 10} ms per request), ${f.concurrency} concurrent, ${n(lc.requests)} requests:`,
    `  slow endpoint's share: ${pct(lc.share)} (${others})   target < 15%: ${ok(lc.share < 0.15)}`,
    `hash, ${h.endpoints} endpoints, ${n(h.clients)} client addresses, two proxies (endpoints listed in opposite orders):`,
    `  identical mapping: ${n(h.identical)} of ${n(h.clients)} (${pct(h.identical / h.clients)}); clients per endpoint ${n(h.spread[0])}-${n(h.spread[1])}   target 100%: ${ok(h.identical === h.clients)}`,
    `  removing one of ${h.endpoints}: ${n(h.moved)} moved (${pct(h.movedShare)}: ${n(h.movedFromRemoved)} of the removed endpoint, ${n(h.movedOthers)} others); still identical on both: ${n(h.identicalAfter)}   target ≤ 12%: ${ok(h.movedShare <= 0.12)}`,
    `errors: ${f.slow.reduce((a, s) => a + s.errors, 0) + h.errors}; hash dials failed and retried on the next endpoint: ${h.dialFailures}`,
  ].join('\n')
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, clients: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h', default: false } } })
  if (values.help === true) { process.stdout.write('usage: node dist/bench/balancers.js [--quick] [--clients 10000] [--out FILE.json]\n'); return }
  const clients = values.clients === undefined ? undefined : Number(values.clients)
  if (clients !== undefined && !(Number.isInteger(clients) && clients > 0 && clients <= 62_500)) throw new Error(`--clients: expected an integer 1-62500, got ${String(values.clients)}`)
  const quick = values.quick === true
  const loadBefore = loadavg().map((x) => x.toFixed(2)).join(' ')
  const f = await runBalancers({ quick, clients, log: (s) => process.stderr.write(`balancers: ${s}\n`) })
  process.stdout.write(`svcproxy balancers bench (${quick ? 'quick' : 'full'}) — ${cpus()[0]?.model ?? 'unknown'}, ${cpus().length} cores, node ${process.version}, loadavg ${loadBefore} before the run\n\n${report(f)}\n`)
  const here = dirname(fileURLToPath(import.meta.url))
  const out = values.out !== undefined ? resolve(values.out) : join(resolve(here, here.includes(join('dist', 'bench')) ? '../../bench/results' : 'results'), quick ? 'balancers-quick.json' : 'balancers.json')
  mkdirSync(dirname(out), { recursive: true })
  writeFileSync(out, `${JSON.stringify({ version: 1, mode: quick ? 'quick' : 'full', date: new Date().toISOString(), ...f }, null, 2)}\n`)
  process.stdout.write(`\nJSON: ${out}\n`)
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`balancers bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exit(1)
  })
}
