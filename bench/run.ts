// `npm run bench` (full) / `npm run bench:quick`: every workload against the same local backends,
// direct, through the naive baseline and through svcproxy. Each proxy runs alone in its own child
// process; the figure that counts is that process's own CPU time (user+sys, process.cpuUsage())
// per unit of work, because on a small machine the load generator shares the cores.
// One table on stdout; the same figures as JSON in bench/results/.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { type BalancerFigures, report as balancersReport, runBalancers } from './balancers.js'
import { type Backends, type Child, type Endpoint, type ProxyAddresses, startChild } from './child.js'
import { type HarnessFigures, report as harnessReport } from './harness.js'
import { type ExternalName, missing, startExternal } from './external.js'
import { writeChart } from './chart.js'
import { bulk, httpClose, httpKeepAlive, httpSequential, type Measured, udpClosedLoop } from './workloads.js'

export type Workload = 'http-keepalive' | 'http-close' | 'bulk' | 'udp' | 'latency'
export type Target = 'direct' | 'naive' | 'svcproxy' | 'nginx' | 'haproxy'
export const WORKLOADS: Workload[] = ['http-keepalive', 'http-close', 'bulk', 'udp', 'latency']
export const TARGETS: Target[] = ['direct', 'naive', 'svcproxy', 'nginx', 'haproxy']
/** Targets that are other programs, started by the bench when installed (bench/external.ts). */
const EXTERNAL: ReadonlySet<Target> = new Set<Target>(['nginx', 'haproxy'])

/** Ratio targets svcproxy/naive of proxy CPU per unit (issue #7); the latency probe has none. */
export const CPU_RATIO_TARGET: Record<Workload, number | null> = { 'http-keepalive': 0.80, 'http-close': 0.60, bulk: 1.00, udp: 0.80, latency: null }
/**
 * Ratio targets svcproxy/nginx of proxy CPU per unit (issue #17). UDP: no worse than when the
 * issue was written (1.41×); its floor in JavaScript is in docs/performance.md.
 */
export const NGINX_RATIO_TARGET: Record<Workload, number | null> = { 'http-keepalive': 1.10, 'http-close': 1.40, bulk: 1.00, udp: 1.41, latency: null }
/** Issue #17: svcproxy's added p50 latency (latency probe) at most nginx's plus this, µs. */
export const ADDED_P50_SLACK_US = 20

const UNITS: Record<Workload, { rate: string, cpu: string }> = {
  'http-keepalive': { rate: 'req/s', cpu: 'µs/req' },
  'http-close': { rate: 'req/s', cpu: 'µs/req' },
  bulk: { rate: 'MB/s', cpu: 's/GB' },
  udp: { rate: 'pairs/s', cpu: 'µs/pair' },
  latency: { rate: 'req/s', cpu: 'µs/req' },
}

export interface Row {
  workload: Workload
  target: Target
  /** 'ok', or 'n/a' when the target does not serve this traffic (see note). */
  status: 'ok' | 'n/a'
  note?: string
  count: number | null
  seconds: number | null
  rate: number | null
  rateUnit: string
  p50Ms: number | null
  p99Ms: number | null
  errors: number | null
  /** Proxy process CPU (user+sys) during the workload, µs; null for direct. */
  proxyCpuUs: number | null
  /** Share of that CPU spent in the kernel (sys / (user+sys)). */
  sysShare: number | null
  cpuPerUnit: number | null
  cpuUnit: string
  /** svcproxy rows: cpuPerUnit / naive's cpuPerUnit. */
  ratio: number | null
  ratioTarget: number | null
  /** Every proxy row: cpuPerUnit / nginx's cpuPerUnit (same run); the target for svcproxy's. */
  ratioNginx?: number | null
  ratioNginxTarget?: number | null
  /** p50/p99 minus direct's, µs: workloads timed finer than 1 ms (not autocannon's keep-alive, not bulk). */
  addedP50Us?: number | null
  addedP99Us?: number | null
  /** latency rows of svcproxy: the most its added p50 may be (nginx's + ADDED_P50_SLACK_US). */
  addedP50TargetUs?: number | null
  /** Every measured repetition (the row's figures are their medians). */
  reps: Rep[]
}

export interface Rep {
  count: number
  seconds: number
  rate: number
  p50Ms: number | null
  p99Ms: number | null
  errors: number
  /** Proxy process CPU during the run (user+sys), and its kernel (sys) part, µs. */
  proxyCpuUs: number | null
  proxySysUs: number | null
  cpuPerUnit: number | null
}

interface Params {
  keepAliveRequests: number
  keepAliveConnections: number
  closeRequests: number
  closeConcurrency: number
  bulkBytes: number
  udpPairs: number
  udpClients: number
  udpWindow: number
  /** Added-latency probe: keep-alive connections, each one request at a time, this many requests each. */
  latencyConnections: number
  latencyRequests: number
  /** Fraction of each workload run first, unmeasured, on every target (JIT, pools). */
  warmup: number
  /** Measured repetitions per workload × target, interleaved across targets; the table shows medians. */
  reps: number
}

const FULL: Params = { keepAliveRequests: 200_000, keepAliveConnections: 50, closeRequests: 20_000, closeConcurrency: 50, bulkBytes: 1024 ** 3, udpPairs: 100_000, udpClients: 8, udpWindow: 8, latencyConnections: 4, latencyRequests: 5_000, warmup: 0.1, reps: 3 }
const QUICK: Params = { keepAliveRequests: 2_000, keepAliveConnections: 50, closeRequests: 300, closeConcurrency: 20, bulkBytes: 16 * 1024 ** 2, udpPairs: 2_000, udpClients: 4, udpWindow: 4, latencyConnections: 4, latencyRequests: 100, warmup: 0.1, reps: 1 }

function machine (): Record<string, unknown> {
  const c = cpus()
  return { cpu: c[0]?.model ?? 'unknown', cores: c.length, node: process.version, platform: `${process.platform} ${release()}`, kernelEntry: kernelEntry(), loadavg: loadavg().map((x) => Math.round(x * 100) / 100) }
}

/**
 * Whether a system call flushes the TLB here: page-table isolation (the meltdown mitigation)
 * without PCID. Where it does, user-space time per unit is 3-5× higher for every proxy, and
 * Node's larger user share moves its ratios to nginx (docs/performance.md, "This machine:
 * kernel entries are dear"): runs on such machines compare only with each other.
 */
function kernelEntry (): string {
  if (process.platform !== 'linux') return 'unknown'
  const read = (f: string): string => { try { return readFileSync(f, 'utf8') } catch { return '' } }
  const pti = read('/sys/devices/system/cpu/vulnerabilities/meltdown').includes('PTI')
  const pcid = (/^flags\s*:(.*)$/m.exec(read('/proc/cpuinfo'))?.[1] ?? '').split(' ').includes('pcid')
  return pti ? (pcid ? 'PTI with PCID' : 'PTI without PCID: each system call flushes the TLB') : 'no PTI'
}

async function runWorkload (w: Workload, ep: Endpoint, p: Params, warm: boolean): Promise<Measured> {
  const f = warm ? p.warmup : 1
  const n = (x: number): number => Math.max(1, Math.round(x * f))
  switch (w) {
    case 'http-keepalive': return await httpKeepAlive(ep, Math.max(p.keepAliveConnections, n(p.keepAliveRequests)), p.keepAliveConnections)
    case 'http-close': return await httpClose(ep, n(p.closeRequests), p.closeConcurrency)
    case 'bulk': return await bulk(ep, warm ? Math.min(p.bulkBytes, 64 * 1024 ** 2) : p.bulkBytes)
    case 'udp': return await udpClosedLoop(ep, n(p.udpPairs), p.udpClients, p.udpWindow)
    case 'latency': return await httpSequential(ep, n(p.latencyRequests), p.latencyConnections)
  }
}

function addressOf (w: Workload, a: ProxyAddresses): Endpoint | null {
  return w === 'udp' ? a.udp : w === 'bulk' ? a.bulk : a.http
}

const kindOf = (w: Workload): 'udp' | 'bulk' | 'http' => w === 'udp' ? 'udp' : w === 'bulk' ? 'bulk' : 'http'

function backendOf (w: Workload, b: Backends): Endpoint {
  // Direct traffic goes to the first backend (the proxies spread over all of them; each is the same).
  const list = w === 'udp' ? b.udp : w === 'bulk' ? b.bulk : b.http
  return list[0] as Endpoint
}

type Cpu = { user: number, system: number, total?: number }

/** CPU between two readings: total µs, and its kernel part (null when the 10 ms ticks saw nothing). */
function cpuDelta (before: Cpu, after: Cpu): { total: number, system: number | null } {
  const ticks = (after.user + after.system) - (before.user + before.system)
  if (after.total === undefined || before.total === undefined) return { total: ticks, system: after.system - before.system }
  const total = after.total - before.total
  return { total, system: ticks > 0 ? total * (after.system - before.system) / ticks : null }
}

function rep (w: Workload, m: Measured, cpu: { total: number, system: number | null } | null): Rep {
  const cpuUs = cpu === null ? null : cpu.total
  const rate = w === 'bulk' ? m.count / 1e6 / m.seconds : m.count / m.seconds
  let cpuPerUnit: number | null = null
  if (cpuUs !== null && m.count > 0) cpuPerUnit = w === 'bulk' ? (cpuUs / 1e6) / (m.count / 1e9) : cpuUs / m.count
  return { count: m.count, seconds: m.seconds, rate, p50Ms: m.p50Ms, p99Ms: m.p99Ms, errors: m.errors, proxyCpuUs: cpuUs, proxySysUs: cpu === null ? null : cpu.system, cpuPerUnit }
}

function median (xs: Array<number | null>): number | null {
  const v = xs.filter((x): x is number => x !== null && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const mid = v.length >> 1
  return v.length % 2 === 1 ? v[mid] as number : ((v[mid - 1] as number) + (v[mid] as number)) / 2
}

function row (w: Workload, target: Target, reps: Rep[] | null, note?: string): Row {
  const u = UNITS[w]
  if (reps === null || reps.length === 0) {
    return { workload: w, target, status: 'n/a', note, count: null, seconds: null, rate: null, rateUnit: u.rate, p50Ms: null, p99Ms: null, errors: null, proxyCpuUs: null, sysShare: null, cpuPerUnit: null, cpuUnit: u.cpu, ratio: null, ratioTarget: null, reps: [] }
  }
  return {
    workload: w,
    target,
    status: 'ok',
    note,
    count: median(reps.map((r) => r.count)),
    seconds: median(reps.map((r) => r.seconds)),
    rate: median(reps.map((r) => r.rate)),
    rateUnit: u.rate,
    p50Ms: median(reps.map((r) => r.p50Ms)),
    p99Ms: median(reps.map((r) => r.p99Ms)),
    errors: reps.reduce((a, r) => a + r.errors, 0),
    proxyCpuUs: median(reps.map((r) => r.proxyCpuUs)),
    sysShare: median(reps.map((r) => (r.proxyCpuUs === null || r.proxySysUs === null || r.proxyCpuUs === 0 ? null : r.proxySysUs / r.proxyCpuUs))),
    cpuPerUnit: median(reps.map((r) => r.cpuPerUnit)),
    cpuUnit: u.cpu,
    ratio: null,
    ratioTarget: null,
    reps,
  }
}

// ---------------------------------------------------------------- table

function fmt (x: number | null, digits: number): string {
  if (x === null || !Number.isFinite(x)) return '-'
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

export function table (rows: Row[], p: Params): string {
  const head = ['workload', 'target', 'rate', 'p50 ms', 'p99 ms', '+p50 µs', '+p99 µs', 'errors', 'proxy CPU', 'sys', 'CPU ×naive', 'CPU ×nginx', 'target', '']
  const body = rows.map((r) => {
    if (r.status === 'n/a') return [r.workload, r.target, 'n/a', '', '', '', '', '', '', '', '', '', '', r.note ?? '']
    const cpuDigits = r.workload === 'bulk' ? 2 : 1
    let goal = ''
    let verdict = ''
    if (r.addedP50TargetUs != null) {
      goal = `+p50 ≤${fmt(r.addedP50TargetUs, 0)}`
      if (r.addedP50Us != null) verdict = r.addedP50Us <= r.addedP50TargetUs ? 'ok' : 'MISS'
    } else if (r.ratioNginxTarget != null) {
      goal = `≤${fmt(r.ratioNginxTarget, 2)}×`
      if (r.ratioNginx != null) verdict = r.ratioNginx <= r.ratioNginxTarget ? 'ok' : 'MISS'
    }
    const fine = r.workload !== 'http-keepalive'
    return [
      r.workload,
      r.target,
      `${fmt(r.rate, 0)} ${r.rateUnit}`,
      fmt(r.p50Ms, fine ? 3 : 0),
      fmt(r.p99Ms, fine ? 3 : 0),
      r.addedP50Us == null ? '' : fmt(r.addedP50Us, 0),
      r.addedP99Us == null ? '' : fmt(r.addedP99Us, 0),
      fmt(r.errors, 0),
      r.cpuPerUnit === null ? '-' : `${fmt(r.cpuPerUnit, cpuDigits)} ${r.cpuUnit}`,
      r.sysShare === null ? '' : `${fmt(r.sysShare * 100, 0)}%`,
      r.ratio === null ? '' : `${fmt(r.ratio, 2)}×`,
      r.ratioNginx == null ? '' : `${fmt(r.ratioNginx, 2)}×`,
      goal,
      verdict,
    ]
  })
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)))
  const right = new Set([2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
  const line = (cells: string[]): string => cells.map((c, i) => (right.has(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd()
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('  ')]
  let prev = ''
  for (let i = 0; i < body.length; i++) {
    const r = rows[i] as Row
    if (prev !== '' && r.workload !== prev) out.push('')
    prev = r.workload
    out.push(line(body[i] as string[]))
  }
  out.push('')
  out.push(`http-keepalive: autocannon, ${p.keepAliveConnections} connections, ${p.keepAliveRequests} requests (latency: 1 ms resolution). ` +
    `http-close: ${p.closeRequests} requests, one TCP connection each, ${p.closeConcurrency} at a time. ` +
    `bulk: one ${(p.bulkBytes / 1024 ** 2).toFixed(0)} MiB stream (MB = 10^6 B, GB = 10^9 B). ` +
    `udp: ${p.udpPairs} pairs, ${p.udpClients} clients × ${p.udpWindow} in flight, 64 B; errors = lost. ` +
    `latency: ${p.latencyConnections} keep-alive connections × ${p.latencyRequests} requests, one at a time each, timed in ns.`)
  out.push(`proxy CPU = user+sys of the proxy process only (nginx, HAProxy: from /proc), per unit; sys = its kernel share; CPU ×naive / ×nginx = this row ÷ that target's, same run; ` +
    `+p50/+p99 = added latency over direct, µs. target (svcproxy, issue #17): CPU ×nginx, or for latency +p50 ≤ nginx's + ${ADDED_P50_SLACK_US} µs. ` +
    `Issue #7's ×naive targets: ${WORKLOADS.filter((w) => CPU_RATIO_TARGET[w] !== null).map((w) => `${w} ≤${fmt(CPU_RATIO_TARGET[w], 2)}`).join(', ')}. ` +
    `Figures are medians of ${p.reps} interleaved run${p.reps === 1 ? '' : 's'} (errors: sum).`)
  return out.join('\n')
}

// ---------------------------------------------------------------- main

export async function runBench (opts: { quick: boolean, affinity: boolean, only: Workload[], log: (s: string) => void, profileDir?: string, nodeArgs?: string[] }): Promise<{ rows: Row[], params: Params, machine: Record<string, unknown>, seconds: number }> {
  const p = opts.quick ? QUICK : FULL
  const started = Date.now()
  const children: Array<Child<unknown>> = []
  try {
    const backends = await startChild<Backends>('backends', 'backends', {})
    children.push(backends)
    // --profile: V8 CPU profiles of the proxy processes, written when they stop.
    // --node-arg: extra node flags for the proxy processes (e.g. --trace-gc, --max-semi-space-size=16).
    const prof = (name: string): string[] => [...(opts.nodeArgs ?? []), ...(opts.profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${opts.profileDir}`, `--cpu-prof-name=${name}.cpuprofile`])]
    const naiveTcp = await startChild<ProxyAddresses>('naive', 'proxy-naive', backends.data, prof('naive'))
    children.push(naiveTcp)
    const naiveUdp = await startChild<ProxyAddresses>('udp-naive', 'udp-naive', backends.data, prof('udp-naive'))
    children.push(naiveUdp)
    const svc = await startChild<ProxyAddresses>('svcproxy', 'proxy-svcproxy', { ...backends.data, affinity: opts.affinity }, prof('svcproxy'))
    children.push(svc)
    // nginx and HAProxy, when installed (bench/external.ts); else their rows say how to install them.
    const externals = new Map<Target, Child<ProxyAddresses>>()
    const absent = new Map<Target, string>()
    for (const name of ['nginx', 'haproxy'] as ExternalName[]) {
      const why = missing(name)
      if (why !== '') { absent.set(name, why); opts.log(`${name}: ${why}; its rows are n/a`); continue }
      const c = await startExternal(name, backends.data)
      children.push(c)
      externals.set(name, c)
    }

    const rows: Row[] = []
    for (const w of opts.only) {
      const naive = w === 'udp' ? naiveUdp : naiveTcp
      const live: Array<{ target: Target, ep: Endpoint, proc: Child<ProxyAddresses> | null, reps: Rep[] }> = []
      const na = new Map<Target, string>()
      for (const target of TARGETS) {
        if (target === 'direct') { live.push({ target, ep: backendOf(w, backends.data), proc: null, reps: [] }); continue }
        const proc = target === 'naive' ? naive : target === 'svcproxy' ? svc : externals.get(target)
        if (proc === undefined) { na.set(target, absent.get(target) ?? 'not started'); continue }
        const ep = addressOf(w, proc.data)
        if (ep === null) na.set(target, `not served: ${proc.data.notes[kindOf(w)] ?? 'no address'}`)
        else live.push({ target, ep, proc, reps: [] })
      }
      for (const l of live) await runWorkload(w, l.ep, p, true)
      // Interleaved (direct, naive, svcproxy, direct, ...) so a drift in machine load hits every target alike.
      for (let i = 0; i < p.reps; i++) {
        for (const l of live) {
          const before = l.proc === null ? null : await l.proc.cpu()
          const m = await runWorkload(w, l.ep, p, false)
          const after = l.proc === null ? null : await l.proc.cpu()
          const cpu = before === null || after === null ? null : cpuDelta(before, after)
          const r = rep(w, m, cpu)
          l.reps.push(r)
          opts.log(`${w} ${l.target} #${i + 1}: ${fmt(r.rate, 0)} ${UNITS[w].rate}, errors ${m.errors}, proxy cpu ${r.cpuPerUnit === null ? '-' : `${fmt(r.cpuPerUnit, 2)} ${UNITS[w].cpu}`}`)
        }
      }
      for (const target of TARGETS) {
        const l = live.find((x) => x.target === target)
        rows.push(l === undefined ? row(w, target, null, na.get(target)) : row(w, target, l.reps))
        if (l === undefined) opts.log(`${w} ${target}: n/a (${na.get(target) ?? ''})`)
      }
      compare(rows.filter((r) => r.workload === w), w)
    }
    return { rows, params: p, machine: machine(), seconds: (Date.now() - started) / 1000 }
  } finally {
    await Promise.all(children.map((c) => c.stop()))
  }
}

/** Fills a workload's ratios (to naive, to nginx), added latencies and svcproxy's targets. */
function compare (rows: Row[], w: Workload): void {
  const at = (t: Target): Row | undefined => rows.find((r) => r.target === t && r.status === 'ok')
  const direct = at('direct')
  const naive = at('naive')
  const nginx = at('nginx')
  const fine = w !== 'http-keepalive' && w !== 'bulk'
  for (const r of rows) {
    if (r.target === 'direct' || r.status !== 'ok') continue
    if (r.target === 'svcproxy' && naive?.cpuPerUnit != null && r.cpuPerUnit !== null && naive.cpuPerUnit > 0) r.ratio = r.cpuPerUnit / naive.cpuPerUnit
    r.ratioNginx = nginx?.cpuPerUnit != null && r.cpuPerUnit !== null && nginx.cpuPerUnit > 0 ? r.cpuPerUnit / nginx.cpuPerUnit : null
    if (fine && direct !== undefined) {
      r.addedP50Us = r.p50Ms === null || direct.p50Ms === null ? null : (r.p50Ms - direct.p50Ms) * 1000
      r.addedP99Us = r.p99Ms === null || direct.p99Ms === null ? null : (r.p99Ms - direct.p99Ms) * 1000
    }
  }
  const s = rows.find((r) => r.target === 'svcproxy')
  if (s !== undefined) {
    s.ratioTarget = CPU_RATIO_TARGET[w]
    s.ratioNginxTarget = NGINX_RATIO_TARGET[w]
    if (w === 'latency' && nginx?.addedP50Us != null) s.addedP50TargetUs = nginx.addedP50Us + ADDED_P50_SLACK_US
  }
}

/** bench/harness.ts in a child process (its handle counts are its own): its figures. */
async function runHarnessChild (): Promise<HarnessFigures> {
  const self = fileURLToPath(import.meta.url)
  const script = join(dirname(self), `harness${self.endsWith('.ts') ? '.ts' : '.js'}`)
  const child = spawn(process.execPath, [...process.execArgv, script, '--json'], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString() })
  const [code] = await once(child, 'exit') as [number | null]
  if (code !== 0) throw new Error(`bench/harness exited ${String(code)}`)
  return JSON.parse(out) as HarnessFigures
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      affinity: { type: 'boolean', default: false },
      only: { type: 'string' },
      out: { type: 'string' },
      profile: { type: 'string' },
      'node-arg': { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help === true) {
    process.stdout.write('usage: node dist/bench/run.js [--quick] [--only http-keepalive,http-close,bulk,udp,latency] [--affinity] [--out FILE.json] [--profile DIR] [--node-arg=--flag ...]\n')
    return
  }
  const only = values.only === undefined ? WORKLOADS : values.only.split(',').map((s) => s.trim()) as Workload[]
  for (const w of only) if (!WORKLOADS.includes(w)) throw new Error(`--only: unknown workload "${w}" (${WORKLOADS.join(', ')})`)
  const quick = values.quick === true
  const log = (s: string): void => { process.stderr.write(`bench: ${s}\n`) }
  const profileDir = values.profile === undefined ? undefined : resolve(values.profile)
  const res = await runBench({ quick, affinity: values.affinity === true, only, log, profileDir, nodeArgs: values['node-arg'] ?? [] })
  const m = res.machine
  const text = table(res.rows, res.params)
  process.stdout.write(`svcproxy bench (${quick ? 'quick' : 'full'}${values.affinity === true ? ', sessionAffinity ClientIP' : ''}) — ${String(m.cpu)}, ${String(m.cores)} cores, node ${String(m.node)}, ${String(m.platform)} (${String(m.kernelEntry)}), loadavg ${(m.loadavg as number[]).join(' ')} before the run, ${res.seconds.toFixed(0)} s\n\n${text}\n`)

  // The full run ends with the balancing algorithms' figures (bench/balancers.ts, issue 14.4).
  let balancers: BalancerFigures | null = null
  if (!quick && values.only === undefined) {
    balancers = await runBalancers({ quick: false, log })
    process.stdout.write(`\nBalancing algorithms (node dist/bench/balancers.js):\n${balancersReport(balancers)}\n`)
  }
  const json = { version: 1, mode: quick ? 'quick' : 'full', affinity: values.affinity === true, date: new Date().toISOString(), seconds: res.seconds, machine: m, params: res.params, rows: res.rows, balancers }
  // Every run ends with the harness workload (bench/harness.ts, issue 13.5), alone in its own process.
  const harness = await runHarnessChild()
  process.stdout.write(`\nHarness workload (node dist/bench/harness.js):\n${harnessReport(harness)}\n`)
  ;(json as Record<string, unknown>).harness = harness
  const body = `${JSON.stringify(json, null, 2)}\n`
  const resultsDir = resolve(dirname(fileURLToPath(import.meta.url)), dirname(fileURLToPath(import.meta.url)).includes(`${join('dist', 'bench')}`) ? '../../bench/results' : 'results')
  const files: string[] = []
  if (values.out !== undefined) files.push(resolve(values.out))
  else if (quick) files.push(join(resultsDir, 'quick.json'))
  else files.push(join(resultsDir, 'latest.json'), join(resultsDir, `${json.date.replace(/[:.]/g, '-')}.json`))
  for (const f of files) {
    mkdirSync(dirname(f), { recursive: true })
    writeFileSync(f, body)
  }
  process.stdout.write(`\nJSON: ${files.join(', ')}\n`)
  // The full run redraws the chart docs/performance.md shows (bench/chart.ts).
  if (!quick && values.only === undefined && values.out === undefined) {
    const svg = resolve(resultsDir, '../../docs/performance.svg')
    writeChart(json, svg)
    process.stdout.write(`Chart: ${svg}\n`)
  }
  if (profileDir !== undefined) process.stdout.write(`CPU profiles: ${profileDir} (summarize: node dist/bench/profile-top.js ${profileDir}/svcproxy.cpuprofile)\n`)
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exit(1)
  })
}
