// The harness workload of issue 13.5: how cheap a proxy is for a test suite.
//  1. Per proxy, one after another: createProxy, apply one service with two endpoints, one TCP
//     connection through it (connect, read the endpoint's reply to its end), close(). Median over
//     `runs` (after a warm-up), and each step's median. Goal: <= 3 ms per proxy.
//  2. `alive` proxies at once in this process, each with a fault (a latency toxic holding the
//     endpoint's reply) and one connection open through it while it holds the data; all closed.
//     The process's handles (sockets, servers, timers) must be back to what they were before.
// Everything runs in this process, on loopback, port 0 everywhere.
//   node dist/bench/harness.js [--runs 100] [--alive 100] [--json]
import { createHook } from 'node:async_hooks'
import { once } from 'node:events'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { cpus, loadavg } from 'node:os'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createProxy, type ServiceProxy } from '../lib/index.js'

export const PER_PROXY_GOAL_MS = 3

export interface HarnessFigures {
  runs: number
  /** Medians (ms) of each step, and of the whole per proxy (p50, p90). */
  createMs: number
  applyMs: number
  connectionMs: number
  closeMs: number
  totalP50Ms: number
  totalP90Ms: number
  alive: {
    proxies: number
    /** proxy.faults was there (issue 13.1): each proxy had a latency toxic holding its reply. */
    withFault: boolean
    /** Creating and applying all of them; closing all of them (at once) with a connection held by the fault in each. */
    createAllMs: number
    closeAllMs: number
    /** RSS growth while they were all alive, per proxy (KiB). */
    rssPerProxyKiB: number
    /** Active handles of the process, by type: before, while alive, after (timers included). */
    before: Record<string, number>
    during: Record<string, number>
    after: Record<string, number>
    /** Handles still open after close() beyond the baseline (must be 0). */
    leftOpen: number
    /**
     * Sockets, servers and timers created while the proxies were alive and never destroyed, by
     * type (async_hooks: unref'd timers included, which the handle list above does not show).
     */
    undestroyed: Record<string, number>
  }
}

/** An endpoint that answers every connection with `name` and closes; its open sockets are counted. */
async function endpoint (name: string): Promise<{ server: Server, port: number, open: () => number }> {
  let open = 0
  const server = createServer((s) => {
    open++
    s.on('error', () => {})
    s.on('close', () => { open-- })
    s.end(name)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const a = server.address()
  if (a === null || typeof a === 'string') throw new Error('no address')
  return { server, port: a.port, open: () => open }
}

function objects (ports: number[]): unknown[] {
  return [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { clusterIP: '127.96.0.10', ports: [{ port: 80 }] } },
    { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'web', namespace: 'default' }, subsets: ports.map((p) => ({ addresses: [{ ip: '127.0.0.1' }], ports: [{ port: p }] })) },
  ]
}

/** One connection through the proxy: connect, read to the end. */
function fetchOnce (p: ServiceProxy): Promise<string> {
  const a = p.address('default/web', 80)
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const s = connect(a.port, a.address)
    s.on('data', (c: Buffer) => chunks.push(c))
    s.on('error', reject)
    s.on('close', () => { resolve(Buffer.concat(chunks).toString()) })
  })
}

/** What async_hooks follows until destroyed: sockets, servers, UDP sockets, timers (ref'd or not). */
const TRACKED = new Set(['TCPWRAP', 'TCPSERVERWRAP', 'UDPWRAP', 'PIPEWRAP', 'Timeout', 'TCPCONNECTWRAP'])

function handles (): Record<string, number> {
  const out: Record<string, number> = {}
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1
  return out
}

function beyond (now: Record<string, number>, base: Record<string, number>): number {
  let n = 0
  for (const [k, v] of Object.entries(now)) n += Math.max(0, v - (base[k] ?? 0))
  return n
}

function quantile (xs: number[], q: number): number {
  const v = [...xs].sort((a, b) => a - b)
  return v[Math.min(v.length - 1, Math.floor(q * v.length))] ?? Number.NaN
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** Waits (turns of the loop, at most `ms`) until `fn` holds. */
async function settle (fn: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms
  while (!fn()) {
    if (Date.now() > end) return false
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  return true
}

export async function runHarness (opts: { runs?: number, alive?: number, log?: (s: string) => void } = {}): Promise<HarnessFigures> {
  const runs = opts.runs ?? 100
  const aliveN = opts.alive ?? 100
  const log = opts.log ?? (() => {})
  const eps = [await endpoint('a'), await endpoint('b')]
  const objs = objects(eps.map((e) => e.port))
  const steps = { create: [] as number[], apply: [] as number[], conn: [] as number[], close: [] as number[], total: [] as number[] }
  try {
    // 1. One proxy after another.
    const warm = Math.max(5, Math.round(runs / 5))
    for (let i = 0; i < warm + runs; i++) {
      const t0 = performance.now()
      const p = createProxy({ ephemeralPorts: true })
      const t1 = performance.now()
      await p.apply(objs)
      const t2 = performance.now()
      const got = await fetchOnce(p)
      const t3 = performance.now()
      await p.close()
      const t4 = performance.now()
      if (got !== 'a' && got !== 'b') throw new Error(`run ${i}: the connection got ${JSON.stringify(got)}`)
      if (i < warm) continue
      steps.create.push(t1 - t0); steps.apply.push(t2 - t1); steps.conn.push(t3 - t2); steps.close.push(t4 - t3); steps.total.push(t4 - t0)
    }
    log(`per proxy: p50 ${quantile(steps.total, 0.5).toFixed(2)} ms over ${runs}`)

    // 2. Many at once, each with a fault holding data, closed together.
    await settle(() => eps.every((e) => e.open() === 0))
    for (let i = 0; i < 3; i++) await turn()
    global.gc?.()
    const before = handles()
    const live = new Map<number, string>()
    const hook = createHook({
      init (id, type) { if (TRACKED.has(type)) live.set(id, type) },
      destroy (id) { live.delete(id) },
    }).enable()
    const rss0 = process.memoryUsage().rss
    const c0 = performance.now()
    const proxies: ServiceProxy[] = []
    let withFault = true
    for (let i = 0; i < aliveN; i++) {
      const p = createProxy({ ephemeralPorts: true, seed: i })
      await p.apply(objs)
      const faults = (p as { faults?: { add: (scope: { service: string }, toxic: { type: string, stream?: string, attributes?: Record<string, number> }) => unknown } }).faults
      if (faults === undefined) withFault = false
      else faults.add({ service: 'default/web' }, { type: 'latency', stream: 'downstream', attributes: { latency: 60_000 } })
      proxies.push(p)
    }
    const createAllMs = performance.now() - c0
    // One connection through each, whose reply the latency toxic holds.
    const clients: Socket[] = await Promise.all(proxies.map(async (p) => {
      const a = p.address('default/web', 80)
      const s = connect(a.port, a.address)
      s.on('error', () => {})
      await once(s, 'connect')
      return s
    }))
    await settle(() => eps.reduce((n, e) => n + e.open(), 0) >= aliveN || !withFault, 2000)
    const during = handles()
    const rssPerProxyKiB = (process.memoryUsage().rss - rss0) / 1024 / aliveN
    const k0 = performance.now()
    await Promise.all(proxies.map(async (p) => { await p.close() }))
    const closeAllMs = performance.now() - k0
    for (const s of clients) s.destroy()
    // The clients' and the endpoints' own sockets close as the FIN/RST reaches them.
    await settle(() => eps.every((e) => e.open() === 0) && beyond(handles(), before) === 0 && live.size === 0)
    hook.disable()
    const after = handles()
    const undestroyed: Record<string, number> = {}
    for (const type of live.values()) undestroyed[type] = (undestroyed[type] ?? 0) + 1
    const leftOpen = beyond(after, before) + live.size
    log(`${aliveN} alive: created in ${createAllMs.toFixed(0)} ms, closed in ${closeAllMs.toFixed(0)} ms, left open ${leftOpen} ${JSON.stringify(undestroyed)}`)
    return {
      runs,
      createMs: quantile(steps.create, 0.5),
      applyMs: quantile(steps.apply, 0.5),
      connectionMs: quantile(steps.conn, 0.5),
      closeMs: quantile(steps.close, 0.5),
      totalP50Ms: quantile(steps.total, 0.5),
      totalP90Ms: quantile(steps.total, 0.9),
      alive: { proxies: aliveN, withFault, createAllMs, closeAllMs, rssPerProxyKiB, before, during, after, leftOpen, undestroyed },
    }
  } finally {
    for (const e of eps) e.server.close()
  }
}

const f2 = (x: number): string => x.toFixed(2)
const typesOf = (h: Record<string, number>): string => Object.entries(h).sort().map(([k, v]) => `${k} ${v}`).join(', ') || 'none'

export function report (f: HarnessFigures): string {
  const a = f.alive
  const ok = (b: boolean): string => (b ? 'ok' : 'MISS')
  const rows = [
    ['harness workload', 'figure', 'goal', ''],
    [`per proxy: create + apply (1 svc, 2 endpoints) + 1 connection + close, p50 of ${f.runs}`, `${f2(f.totalP50Ms)} ms (p90 ${f2(f.totalP90Ms)})`, `≤ ${PER_PROXY_GOAL_MS} ms`, ok(f.totalP50Ms <= PER_PROXY_GOAL_MS)],
    ['  of which create / apply / connection / close (p50 each)', `${f2(f.createMs)} / ${f2(f.applyMs)} / ${f2(f.connectionMs)} / ${f2(f.closeMs)} ms`, '', ''],
    [`${a.proxies} proxies alive at once${a.withFault ? ', each with a latency fault holding a connection' : ' (no proxy.faults: without faults)'}`, `created ${a.createAllMs.toFixed(0)} ms, all closed ${a.closeAllMs.toFixed(0)} ms, ${a.rssPerProxyKiB.toFixed(0)} KiB RSS each`, 'nothing left open', ok(a.leftOpen === 0 && a.withFault)],
    ['  active handles before / while alive / after', `${typesOf(a.before)} / ${typesOf(a.during)} / ${typesOf(a.after)}`, '', ''],
    ['  created while alive, never destroyed (async_hooks, unref\'d timers too)', typesOf(a.undestroyed), '', a.leftOpen === 0 ? '' : `${a.leftOpen} left open`],
  ]
  const w = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? []
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(w[i] ?? 0)).join('  ').trimEnd()
  return [line(rows[0] as string[]), w.map((n) => '-'.repeat(n)).join('  '), ...rows.slice(1).map(line)].join('\n')
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string' }, alive: { type: 'string' }, json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } } })
  if (values.help === true) { process.stdout.write('usage: node dist/bench/harness.js [--runs 100] [--alive 100] [--json]\n'); return }
  const int = (v: string | undefined, name: string, dflt: number): number => {
    if (v === undefined) return dflt
    const n = Number(v)
    if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new Error(`--${name}: expected an integer 1-10000, got ${v}`)
    return n
  }
  const loadBefore = loadavg().map((x) => x.toFixed(2)).join(' ')
  const f = await runHarness({ runs: int(values.runs, 'runs', 100), alive: int(values.alive, 'alive', 100), log: (s) => process.stderr.write(`harness: ${s}\n`) })
  if (values.json === true) { process.stdout.write(`${JSON.stringify(f)}\n`); return }
  process.stdout.write(`svcproxy harness bench — ${cpus()[0]?.model ?? 'unknown'}, ${cpus().length} cores, node ${process.version}, loadavg ${loadBefore} before the run\n\n${report(f)}\n`)
  if (f.alive.leftOpen !== 0) process.exitCode = 1
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`harness: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exit(1)
  })
}
