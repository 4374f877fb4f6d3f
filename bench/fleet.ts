// Fleet simulator (issue 19, part 2): N daemons' worth of Redis followers against one Redis, one
// writer applying endpoint changes, and Redis's own accounting.
//
//   node dist/bench/fleet.js [--n 10,100,1000] [--store 10000x10] [--idle 30] [--changes 200] [--rate 10] [--workers 2] [--storm]
//
// Followers run the real source code (watchRedis: lib/sources/redis, its two connections, list,
// watch, periodic resync, relist) in worker processes, many per process. What each follower feeds
// is a stand-in for the data plane (it counts the services it is told to serve): a node's data
// plane costs its own CPU, never Redis's, and 1,000 real data planes of 10,000 services do not fit
// in 2 cores. bench/redis.ts measures the real data plane end to end (apply → first connection).
//
// Redis's side: CPU of the redis-server process (/proc/PID/stat, user + system), INFO
// commandstats deltas, SLOWLOG with slowlog-log-slower-than 10 ms. Redis runs with persistence
// (appendonly yes, appendfsync everysec) in a private directory; the restart is SHUTDOWN (which
// writes the AOF) and a start on the same port and directory.

import { type ChildProcess, fork, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { pino } from 'pino'
import { RedisStore, type RedisSource, type ServiceProxy, watchRedis } from '../lib/index.js'
import { freePortOn } from './external.js'

const wall = (): number => performance.timeOrigin + performance.now()
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

function pct (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN
}

// ---------------------------------------------------------------- worker: many followers

interface StartMsg { type: 'start', url: string, prefix: string, count: number, syncPeriodMs: number, concurrency: number, probe: boolean }
type ToWorker = StartMsg | { type: 'measure', from: number } | { type: 'cpu' } | { type: 'back', rev: number } | { type: 'stats' } | { type: 'stop' }

/** The data plane's place: counts the services it would serve (the "never an empty table" check). */
class StandIn {
  readonly services = new Set<string>()
  minServed = Number.POSITIVE_INFINITY
  listed = false
  async write (upserts: Array<{ kind: string, namespace: string, name: string }>, deletes: Array<{ kind: string, namespace: string, name: string }>): Promise<{ revision: number, warnings: string[], changed: string[], failed: unknown[] }> {
    for (const d of deletes) if (d.kind === 'Service') this.services.delete(`${d.namespace}/${d.name}`)
    for (const u of upserts) if (u.kind === 'Service') this.services.add(`${u.namespace}/${u.name}`)
    if (this.listed) this.minServed = Math.min(this.minServed, this.services.size)
    return { revision: 0, warnings: [], changed: [...upserts, ...deletes].map((o) => `${o.namespace}/${o.name}`), failed: [] }
  }

  async retryFailedListeners (): Promise<void> {}
}

async function worker (): Promise<void> {
  const send = (m: unknown): void => { process.send?.(m) }
  const followers: Array<{ source: RedisSource, dp: StandIn, last: number }> = []
  let from = Number.POSITIVE_INFINITY
  let probe = false
  let cpuAt = process.cpuUsage()
  let wallAt = wall()
  const times = new Map<number, number[]>()
  const logger = pino({ level: 'silent' })
  const onApplied = (f: { last: number }, rev: number): void => {
    const t = wall()
    for (let r = Math.max(f.last + 1, from); r <= rev; r++) {
      let xs = times.get(r)
      if (xs === undefined) times.set(r, (xs = []))
      xs.push(t)
      if (xs.length === followers.length) { send({ type: 'applied', rev: r, times: xs, probe }); times.delete(r) }
    }
    f.last = Math.max(f.last, rev)
  }
  process.on('message', (m: ToWorker) => {
    void (async () => {
      if (m.type === 'start') {
        probe = m.probe
        const t0 = wall()
        let next = 0
        const one = async (): Promise<void> => {
          while (next < m.count) {
            next++
            const dp = new StandIn()
            const f = { source: null as unknown as RedisSource, dp, last: 0 }
            f.source = await watchRedis(dp as unknown as ServiceProxy, { url: m.url, prefix: m.prefix, logger, syncPeriodMs: m.syncPeriodMs, startTimeoutMs: 600_000, onApplied: (e) => { onApplied(f, e.revision) } })
            await f.source.synced()
            dp.listed = true
            dp.minServed = dp.services.size
            followers.push(f)
          }
        }
        await Promise.all(Array.from({ length: m.concurrency }, one))
        send({ type: 'ready', ms: wall() - t0, rss: process.memoryUsage().rss })
      } else if (m.type === 'measure') {
        from = m.from
        cpuAt = process.cpuUsage()
        wallAt = wall()
        send({ type: 'measuring' })
      } else if (m.type === 'cpu') {
        const u = process.cpuUsage(cpuAt)
        send({ type: 'cpu', share: (u.user + u.system) / 1000 / (wall() - wallAt), probe })
      } else if (m.type === 'back') {
        for (;;) {
          // The store's own revision: one still serving an older store (another epoch) is not back.
          if (followers.every((f) => !f.source.health().stale && f.source.revision === m.rev)) break
          await sleep(20)
        }
        send({ type: 'back', at: wall() })
      } else if (m.type === 'stats') {
        send({ type: 'stats', minServed: Math.min(...followers.map((f) => f.dp.minServed)), lists: followers.reduce((n, f) => n + f.source.stats.lists, 0), resumes: followers.reduce((n, f) => n + f.source.stats.resumes, 0) })
      } else if (m.type === 'stop') {
        await Promise.all(followers.map(async (f) => await f.source.close()))
        process.exit(0)
      }
    })().catch((err: unknown) => { process.stderr.write(`fleet worker: ${(err as Error).stack ?? String(err)}\n`); process.exit(1) })
  })
  send({ type: 'up' })
}

// ---------------------------------------------------------------- parent: Redis, writer, workers

interface FleetOptions { storm: boolean, ns: number[], services: number, endpoints: number, largeN: number, largeServices: number, idleS: number, changes: number, rate: number, workers: number, syncPeriodMs: number }

class Redis {
  proc: ChildProcess | null = null
  readonly dir = mkdtempSync(join(tmpdir(), 'svcproxy-fleet-'))
  constructor (readonly port: number) {}
  get url (): string { return `redis://127.0.0.1:${this.port}` }
  async start (): Promise<void> {
    // Favoured by the scheduler (nice -10): on a shared, loaded machine SLOWLOG counts wall time,
    // preemption included; this keeps the figures Redis's own.
    const p = spawn('nice', ['-n', '-10', 'redis-server', '--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec',
      '--slowlog-log-slower-than', '10000', '--slowlog-max-len', '10000', '--maxclients', '10000'], { stdio: ['ignore', 'pipe', 'inherit'] })
    this.proc = p
    let out = ''
    await new Promise<void>((resolve, reject) => {
      const onData = (c: Buffer): void => { out += c.toString(); if (out.includes('Ready to accept connections')) { p.stdout?.off('data', onData); p.stdout?.resume(); resolve() } }
      p.stdout?.on('data', onData)
      p.once('exit', (code) => reject(new Error(`redis-server exited (${code}):\n${out}`)))
    })
  }

  /** user + system CPU seconds of redis-server. */
  cpu (): number {
    const pid = this.proc?.pid
    if (pid === undefined) return 0
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    return (Number(f[11]) + Number(f[12])) / 100 // CLK_TCK is 100 on Linux
  }

  /** Samples redis-server's CPU every 500 ms until `stop()`, which returns the highest share of a core seen. */
  peakCpu (): { stop: () => number } {
    const pk = { cpu: 0, last: this.cpu(), at: wall() }
    const timer = setInterval(() => {
      const c = this.cpu()
      const t = wall()
      pk.cpu = Math.max(pk.cpu, (c - pk.last) / ((t - pk.at) / 1000))
      pk.last = c
      pk.at = t
    }, 500)
    return { stop: () => { clearInterval(timer); return pk.cpu } }
  }

  async shutdown (store: RedisStore): Promise<void> {
    const p = this.proc
    const exited = p === null ? Promise.resolve() : once(p, 'exit')
    await store.client.call('SHUTDOWN', []).catch(() => {}) // writes the AOF, then exits
    await exited
    this.proc = null
  }

  stop (): void { this.proc?.kill('SIGKILL'); rmSync(this.dir, { recursive: true, force: true }) }
}

async function commandStats (store: RedisStore): Promise<Map<string, { calls: number, usec: number }>> {
  const text = String(await store.client.call('INFO', ['commandstats']))
  const out = new Map<string, { calls: number, usec: number }>()
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) out.set(m[1] ?? '', { calls: Number(m[2]), usec: Number(m[3]) })
  return out
}

function statsDelta (a: Map<string, { calls: number, usec: number }>, b: Map<string, { calls: number, usec: number }>, seconds: number): string {
  const rows: Array<[string, number, number]> = []
  for (const [k, v] of b) {
    const o = a.get(k) ?? { calls: 0, usec: 0 }
    if (k === 'info' || k === 'slowlog' || k === 'config') continue
    if (v.calls > o.calls) rows.push([k, (v.calls - o.calls) / seconds, (v.usec - o.usec) / seconds])
  }
  rows.sort((x, y) => y[2] - x[2])
  return rows.slice(0, 4).map(([k, c, u]) => `${k} ${c.toFixed(0)}/s ${(u / 1000).toFixed(1)}ms/s`).join(', ')
}

async function slowlog (store: RedisStore): Promise<{ count: number, maxMs: number, worst: string }> {
  const entries = await store.client.call('SLOWLOG', ['GET', '10000']) as unknown[]
  let maxMs = 0
  let worst = ''
  for (const e of entries) {
    if (!Array.isArray(e)) continue
    const ms = Number(e[2]) / 1000
    if (ms > maxMs) { maxMs = ms; worst = String((e[3] as unknown[])?.[0] ?? '') }
  }
  return { count: entries.length, maxMs, worst }
}

const svc = (name: string): unknown => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { ports: [{ port: 80 }] } })
const eps = (i: number, per: number, salt: number): unknown => ({
  apiVersion: 'v1',
  kind: 'Endpoints',
  metadata: { name: `s${i}`, namespace: 'default' },
  subsets: [{ addresses: Array.from({ length: per }, (_, j) => ({ ip: `10.${(i >> 8) & 255}.${i & 255}.${j === 0 ? 1 + (salt % 250) : j + 1}` })), ports: [{ port: 8080 }] }],
})

class Workers {
  readonly procs: ChildProcess[] = []
  private readonly handlers = new Set<(m: { type: string } & Record<string, unknown>) => void>()

  async spawn (n: number): Promise<void> {
    const self = fileURLToPath(import.meta.url)
    for (let i = 0; i < n; i++) {
      const p = fork(self, ['--worker'], { execArgv: ['--max-old-space-size=8192'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      p.on('message', (m: { type: string } & Record<string, unknown>) => { for (const h of this.handlers) h(m) })
      this.procs.push(p)
    }
    await this.collect('up', n)
  }

  on (h: (m: { type: string } & Record<string, unknown>) => void): () => void {
    this.handlers.add(h)
    return () => this.handlers.delete(h)
  }

  /** The next `count` messages of a type. */
  collect (type: string, count = this.procs.length): Promise<Array<Record<string, unknown>>> {
    return new Promise((resolve) => {
      const got: Array<Record<string, unknown>> = []
      const off = this.on((m) => {
        if (m.type !== type) return
        got.push(m)
        if (got.length === count) { off(); resolve(got) }
      })
    })
  }

  send (m: ToWorker, i?: number): void {
    for (const [j, p] of this.procs.entries()) if (i === undefined || i === j) p.send(m)
  }

  async stop (): Promise<void> {
    await Promise.all(this.procs.map(async (p) => { const e = once(p, 'exit'); p.send({ type: 'stop' }); await e }))
    this.procs.length = 0
  }
}

interface Row { storm: { backS: number, peakCpu: number, slowMax: number, relists: number }, n: number, followed: string, probeP50: number, probeP99: number, probes: number, workerCpu: number[], listS: number, rssMiB: number, idleCpu: number, idleCmds: string, changeCpu: number, p50: number, p99: number, max: number, changes: number, slowCount: number, slowMax: number, slowWorst: string, restartBackS: number, restartPeakCpu: number, afterRestartP99: number, minServed: number, relistsOnRestart: number }

const PROBES = 10

const progress = (msg: string): void => { process.stderr.write(`[fleet ${new Date().toISOString().slice(11, 19)}] ${msg}\n`) }

async function runN (redis: Redis, store: RedisStore, o: FleetOptions, n: number, revNow: { rev: number }, services: number): Promise<Row> {
  progress(`N=${n}: starting followers`)
  const w = new Workers()
  // With more than PROBES followers, PROBES of them run in a process of their own that is never
  // busy: their times are what Redis and one node's own source take, apart from the load of
  // hundreds of simulated nodes sharing 2 cores in the other processes.
  const probes = n > PROBES ? PROBES : 0
  const loadProcs = Math.min(n - probes, o.workers)
  const procs = loadProcs + (probes > 0 ? 1 : 0)
  await w.spawn(procs)
  const per = Array.from({ length: loadProcs }, (_, i) => Math.floor((n - probes) / loadProcs) + (i < (n - probes) % loadProcs ? 1 : 0))
  if (probes > 0) per.push(probes)
  const t0 = wall()
  const readyP = w.collect('ready')
  per.forEach((count, i) => { w.send({ type: 'start', url: redis.url, prefix: store.keys.objects.replace(/objects$/, ''), count, syncPeriodMs: o.syncPeriodMs, concurrency: 4, probe: probes > 0 && i === procs - 1 }, i) })
  const ready = await readyP
  const listS = (wall() - t0) / 1000
  const rssMiB = ready.reduce((s, m) => s + Number(m.rss), 0) / 2 ** 20
  progress(`N=${n}: all listed in ${listS.toFixed(1)} s; idle ${o.idleS} s`)
  await sleep(2000)

  // Idle: no writes, default sync period: watches block, idle checks and resyncs are MGETs.
  await store.client.call('SLOWLOG', ['RESET'])
  let s0 = await commandStats(store)
  let c0 = redis.cpu()
  let at = wall()
  await sleep(o.idleS * 1000)
  let secs = (wall() - at) / 1000
  const idleCpu = (redis.cpu() - c0) / secs
  const idleCmds = statsDelta(s0, await commandStats(store), secs)

  // Changes: `rate` endpoint changes per second, apply start → each follower applied it.
  const starts = new Map<number, number>()
  const lat: number[] = []
  const probeLat: number[] = []
  const offApplied = w.on((m) => {
    if (m.type !== 'applied') return
    const start = starts.get(Number(m.rev))
    if (start !== undefined) for (const t of m.times as number[]) (m.probe === true ? probeLat : lat).push(t - start)
  })
  progress(`N=${n}: ${o.changes} changes at ${o.rate}/s`)
  const measuring = w.collect('measuring')
  w.send({ type: 'measure', from: revNow.rev + 1 })
  await measuring // else a follower may apply the first change before it knows to time it
  s0 = await commandStats(store)
  c0 = redis.cpu()
  at = wall()
  for (let i = 0; i < o.changes; i++) {
    const due = at + (i * 1000) / o.rate
    const wait = due - wall()
    if (wait > 0) await sleep(wait)
    const t = wall()
    const res = await store.apply([eps(i % services, o.endpoints, i + 1 + n)], 'fleet')
    starts.set(res.revision, t)
    revNow.rev = res.revision
  }
  const deadline = wall() + 30_000
  while (lat.length + probeLat.length < o.changes * n && wall() < deadline) await sleep(50)
  secs = (wall() - at) / 1000
  const changeCpu = (redis.cpu() - c0) / secs
  const cpuP = w.collect('cpu')
  w.send({ type: 'cpu' })
  const workerCpu = (await cpuP).filter((m) => m.probe !== true).map((m) => Number(m.share))
  const slow = await slowlog(store)
  offApplied()
  const all = [...lat, ...probeLat]
  const sorted = [...all].sort((a, b) => a - b)
  const changes = all.length / n

  // Restart with persistence: SHUTDOWN writes the AOF; the same port and directory again.
  progress(`N=${n}: restart`)
  const listsP = w.collect('stats'); w.send({ type: 'stats' })
  const listsBefore = (await listsP).reduce((s, m) => s + Number(m.lists), 0)
  await redis.shutdown(store)
  const down = wall()
  await sleep(1000)
  await redis.start()
  const peak = redis.peakCpu()
  const backP = w.collect('back')
  w.send({ type: 'back', rev: revNow.rev })
  const back = await backP
  const restartBackS = (Math.max(...back.map((m) => Number(m.at))) - down) / 1000
  // One change after the restart: current again, end to end.
  const after: number[] = []
  const off2 = w.on((m) => { if (m.type === 'applied') for (const t of m.times as number[]) after.push(t - startAfter) })
  const startAfter = wall()
  const res = await store.apply([eps(1, o.endpoints, 999)], 'fleet')
  revNow.rev = res.revision
  starts.set(res.revision, startAfter)
  while (after.length < n && wall() < startAfter + 30_000) await sleep(20)
  off2()
  const restartPeakCpu = peak.stop()
  let storm = { backS: Number.NaN, peakCpu: Number.NaN, slowMax: Number.NaN, relists: 0 }
  if (o.storm) {
    // Restarted without its data (no AOF): every follower keeps serving (the guard), then the
    // writer applies the whole store again and every follower relists at once.
    progress(`N=${n}: restart without persistence, then the whole store applied again`)
    const lp = w.collect('stats'); w.send({ type: 'stats' })
    const listsThen = (await lp).reduce((sum, m) => sum + Number(m.lists), 0)
    redis.proc?.kill('SIGKILL')
    if (redis.proc !== null) await once(redis.proc, 'exit')
    rmSync(join(redis.dir, 'appendonlydir'), { recursive: true, force: true })
    const down2 = wall()
    await redis.start()
    await store.client.call('SLOWLOG', ['RESET']).catch(async () => { await sleep(500); await store.client.call('SLOWLOG', ['RESET']) })
    const pk = redis.peakCpu()
    const objs: unknown[] = []
    for (let i = 0; i < services; i++) objs.push(svc(`s${i}`), eps(i, o.endpoints, 0))
    const re = await store.apply(objs, 'fleet')
    revNow.rev = re.revision
    const bp = w.collect('back')
    w.send({ type: 'back', rev: re.revision })
    const b2 = await bp
    const stormPeakCpu = pk.stop()
    const sl = await slowlog(store)
    const lp2 = w.collect('stats'); w.send({ type: 'stats' })
    storm = { backS: (Math.max(...b2.map((m) => Number(m.at))) - down2) / 1000, peakCpu: stormPeakCpu, slowMax: sl.maxMs, relists: (await lp2).reduce((sum, m) => sum + Number(m.lists), 0) - listsThen }
  }
  const statsP = w.collect('stats'); w.send({ type: 'stats' })
  const st = await statsP
  await w.stop()
  return {
    n, followed: `${services}×${o.endpoints}`, listS, rssMiB, idleCpu, idleCmds, changeCpu,
    p50: pct(sorted, 50), p99: pct(sorted, 99), probeP50: pct(probeLat, 50), probeP99: pct(probeLat, 99), probes, workerCpu, max: sorted[sorted.length - 1] ?? Number.NaN, changes,
    slowCount: slow.count, slowMax: slow.maxMs, slowWorst: slow.worst,
    restartBackS, restartPeakCpu, afterRestartP99: pct(after, 99),
    minServed: Math.min(...st.map((m) => Number(m.minServed))),
    relistsOnRestart: st.reduce((s, m) => s + Number(m.lists), 0) - listsBefore - storm.relists,
    storm,
  }
}

async function main (): Promise<void> {
  const argv = process.argv.slice(2)
  const arg = (name: string, d: string): string => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] ?? d : d }
  const [svcs, per] = arg('--store', '10000x10').split('x').map(Number)
  const o: FleetOptions = {
    ns: arg('--n', '10,100,1000').split(',').map(Number),
    services: svcs ?? 10_000,
    endpoints: per ?? 10,
    idleS: Number(arg('--idle', '30')),
    changes: Number(arg('--changes', '200')),
    rate: Number(arg('--rate', '10')),
    workers: Number(arg('--workers', '2')),
    syncPeriodMs: Number(arg('--sync-period-ms', '30000')),
    largeN: Number(arg('--large-n', '1000')),
    storm: argv.includes('--storm'),
    largeServices: Number(arg('--large-store', '1000x10').split('x')[0]),
  }
  process.stdout.write(`svcproxy fleet bench: ${cpus().length} cores, node ${process.version}, store ${o.services} services × ${o.endpoints} endpoints, sync period ${o.syncPeriodMs / 1000} s, ${o.rate} changes/s\n`)
  const redis = new Redis(await freePortOn('127.0.0.1'))
  await redis.start()
  const store = new RedisStore({ url: redis.url })
  try {
    const objects: unknown[] = []
    for (let i = 0; i < o.services; i++) objects.push(svc(`s${i}`), eps(i, o.endpoints, 0))
    await store.client.call('SLOWLOG', ['RESET'])
    let t = wall()
    const first = await store.apply(objects, 'fleet')
    const loadMs = wall() - t
    const loadSlow = await slowlog(store)
    await store.client.call('SLOWLOG', ['RESET'])
    t = wall()
    await store.apply(objects, 'fleet') // the same document again: nothing changed
    const sameMs = wall() - t
    objects[3] = eps(1, o.endpoints, 7)
    t = wall()
    const one = await store.apply(objects, 'fleet')
    const oneMs = wall() - t
    const oneSlow = await slowlog(store)
    process.stdout.write(`writer: first apply ${loadMs.toFixed(0)} ms (slowest Redis command ${loadSlow.maxMs.toFixed(1)} ms ${loadSlow.worst}); the whole document again, unchanged ${sameMs.toFixed(0)} ms, one endpoint changed ${oneMs.toFixed(0)} ms (slowest Redis command ${oneSlow.maxMs.toFixed(1)} ms)\n`)
    const revNow = { rev: Math.max(first.revision, one.revision) }
    // Large fleets follow a smaller store of their own (prefix {fleet}:), the full one staying in
    // Redis (its memory, its AOF at the restart): each follower lists what it follows once, at
    // 0.5-1 s of CPU per 100,000 endpoints, which 2 cores cannot do 1,000 times in a bench run.
    let small: { store: RedisStore, rev: { rev: number } } | null = null
    const rows: Row[] = []
    for (const n of o.ns) {
      let r: Row
      if (n >= o.largeN && o.largeServices < o.services) {
        if (small === null) {
          const s2 = new RedisStore({ url: redis.url, prefix: '{fleet}:' })
          const objs: unknown[] = []
          for (let i = 0; i < o.largeServices; i++) objs.push(svc(`s${i}`), eps(i, o.endpoints, 0))
          small = { store: s2, rev: { rev: (await s2.apply(objs, 'fleet')).revision } }
        }
        r = await runN(redis, small.store, o, n, small.rev, o.largeServices)
      } else {
        r = await runN(redis, store, o, n, revNow, o.services)
      }
      rows.push(r)
      process.stdout.write(`N=${n}: ${JSON.stringify(r)}\n`)
    }
    process.stdout.write(`${formatRows(rows)}\n`)
    await small?.store.close()
  } finally {
    await store.close()
    redis.stop()
  }
}

function formatRows (rows: Row[]): string {
  const h = ['followers', 'store followed', 'all listed', 'idle Redis CPU', '10/s Redis CPU', 'apply→follower p50', 'p99', 'probes p50 / p99', 'slowlog >10ms', 'restart: all back', 'restart peak CPU', 'min served']
  const lines = rows.map((r) => [String(r.n), r.followed, `${r.listS.toFixed(1)} s`, `${(r.idleCpu * 100).toFixed(1)}%`, `${(r.changeCpu * 100).toFixed(1)}%`,
    `${r.p50.toFixed(1)} ms`, `${r.p99.toFixed(1)} ms`, r.probes > 0 ? `${r.probeP50.toFixed(1)} / ${r.probeP99.toFixed(1)} ms` : '(all)', `${r.slowCount} (max ${r.slowMax.toFixed(1)} ms)`, `${r.restartBackS.toFixed(1)} s`, `${(r.restartPeakCpu * 100).toFixed(0)}%`, String(r.minServed)])
  const w = h.map((x, i) => Math.max(x.length, ...lines.map((l) => l[i]?.length ?? 0)))
  const fmt = (l: string[]): string => `| ${l.map((x, i) => x.padEnd(w[i] ?? 0)).join(' | ')} |`
  return [fmt(h), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...lines.map(fmt)].join('\n') +
    '\n' + rows.map((r) => `N=${r.n}: idle commands ${r.idleCmds}; follower RSS ${r.rssMiB.toFixed(0)} MiB; relists on restart ${r.relistsOnRestart}; simulator processes' CPU during the changes ${r.workerCpu.map((c) => `${(c * 100).toFixed(0)}%`).join(', ')}; after restart p99 ${r.afterRestartP99.toFixed(1)} ms${Number.isNaN(r.storm.backS) ? '' : `; restart without persistence + the whole store applied again: all ${r.storm.relists} relisted and current in ${r.storm.backS.toFixed(1)} s, peak Redis CPU ${(r.storm.peakCpu * 100).toFixed(0)}%, slowest command ${r.storm.slowMax.toFixed(1)} ms`}`).join('\n')
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.includes('--worker')) {
    worker().catch((err: unknown) => { process.stderr.write(`fleet worker: ${(err as Error).stack ?? String(err)}\n`); process.exit(1) })
  } else {
    main().then(() => process.exit(0), (err: unknown) => {
      process.stderr.write(`bench/fleet: ${(err as Error).stack ?? String(err)}\n`)
      process.exit(1)
    })
  }
}
