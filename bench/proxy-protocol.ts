// PROXY protocol's cost (issue 14 part 1): per-connection CPU of the proxy process with the header
// off, v1 and v2, in the same run. One svcproxy process (a child, so its CPU is its own) serves
// three services on one set of endpoints: no annotation (off), svcproxy.io/proxy-protocol v1 and
// v2 (and a control, off again). Rounds interleave them (off, ctl, v1, v2, then ctl, v1, v2, off, ...), each round opens the same
// number of short connections (connect, "ping\n", the endpoint answers "pong" and closes); the
// child's user+system CPU per connection is taken around each. The figure is the median over
// rounds of on/off, paired within a round. Target: within 5% of off.
// --strace: instead, count the proxy's system calls per connection in each mode (strace -c -f -p):
// what the header adds to the kernel's work, free of the machine's noise (strace slows it: no timing).
//   node dist/bench/proxy-protocol.js [--quick] [--engine uv|node] [--conns N] [--rounds N] [--strace]
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { connect, createServer, type Server } from 'node:net'
import { cpus, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { createProxy } from '../lib/index.js'
import { childConfig, failToParent, serveParent, startChild } from './child.js'
import { countsTable, parseStraceSummary, type SyscallCounts } from './syscalls.js'

/** ctl: a second service without the header, the same as off: its ratio to off is the run's noise. */
type Mode = 'off' | 'ctl' | 'v1' | 'v2'
const MODES: readonly Mode[] = ['off', 'ctl', 'v1', 'v2']
interface ChildCfg { engine: 'uv' | 'node', endpoints: Array<{ ip: string, port: number }> }
type Addrs = Record<Mode, { ip: string, port: number }>

function objects (name: string, clusterIP: string, eps: ChildCfg['endpoints'], mode: Mode): unknown[] {
  const annotations: Record<string, string> = mode === 'off' || mode === 'ctl' ? {} : { 'svcproxy.io/proxy-protocol': mode }
  return [
    { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default', annotations }, spec: { clusterIP, ports: [{ port: 80, protocol: 'TCP' }] } },
    { apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: 'default' }, subsets: eps.map((e) => ({ addresses: [{ ip: e.ip }], ports: [{ port: e.port, protocol: 'TCP' }] })) },
  ]
}

/** The child: svcproxy with one service per mode. */
async function child (): Promise<void> {
  const cfg = childConfig<ChildCfg>()
  const proxy = createProxy({ ephemeralPorts: true, engine: cfg.engine, logger: pino({ level: 'silent' }) })
  await proxy.apply(MODES.flatMap((m, i) => objects(`pp-${m}`, `127.96.30.${i + 1}`, cfg.endpoints, m)), '<bench>')
  const out = {} as Addrs
  for (const m of MODES) { const a = proxy.address(`default/pp-${m}`, 80); out[m] = { ip: a.address, port: a.port } }
  serveParent(out, () => proxy.close())
}

/** An endpoint: reads until "ping\n" (after whatever header came first), answers "pong", closes. */
async function endpoint (ip: string): Promise<{ server: Server, port: number }> {
  const server = createServer((s) => {
    let seen = ''
    s.on('error', () => {})
    s.on('data', (d: Buffer) => { seen += d.toString('latin1'); if (seen.endsWith('ping\n')) s.end('pong') })
  })
  server.listen(0, ip)
  await once(server, 'listening')
  const a = server.address()
  if (a === null || typeof a === 'string') throw new Error('no address')
  return { server, port: a.port }
}

function oneConnection (ip: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    let got = ''
    const s = connect({ host: ip, port }, () => s.write('ping\n'))
    s.on('data', (d: Buffer) => { got += d.toString() })
    s.on('error', () => resolve(false))
    s.on('close', () => resolve(got === 'pong'))
  })
}

async function batch (ip: string, port: number, n: number, concurrency: number): Promise<number> {
  let next = 0
  let failed = 0
  const worker = async (): Promise<void> => {
    while (next < n) { next++; if (!await oneConnection(ip, port)) failed++ }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return failed
}

/** Runs `work` with strace -c attached to `pid`; returns strace's summary. */
async function straced (pid: number, work: () => Promise<void>): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'svcproxy-pp-strace-'))
  const out = join(dir, 'summary')
  const st = spawn('strace', ['-c', '-f', '-p', String(pid), '-o', out], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  st.stderr.on('data', (c: Buffer) => { err += c.toString() })
  for (const t0 = Date.now(); !err.includes('attached');) {
    if (st.exitCode !== null || Date.now() - t0 > 10_000) throw new Error(`strace: ${err.trim() || 'not attached'}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  await work()
  st.kill('SIGINT')
  await once(st, 'exit')
  const text = readFileSync(out, 'utf8')
  rmSync(dir, { recursive: true, force: true })
  return text
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2
}

async function parent (): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' }, engine: { type: 'string' }, conns: { type: 'string' }, rounds: { type: 'string' }, concurrency: { type: 'string' }, strace: { type: 'boolean' } } })
  const quick = values.quick === true
  const engine = values.engine === 'node' ? 'node' : 'uv'
  const conns = Number(values.conns ?? (quick ? 300 : 1500))
  const rounds = Number(values.rounds ?? (quick ? 2 : 21))
  const concurrency = Number(values.concurrency ?? 32)
  const eps = await Promise.all(['127.0.30.1', '127.0.30.2'].map(async (ip) => ({ ip, ...(await endpoint(ip)) })))
  const proxy = await startChild<Addrs>('svcproxy', 'proxy-protocol', { engine, endpoints: eps.map((e) => ({ ip: e.ip, port: e.port })) } satisfies ChildCfg)
  const load0 = loadavg()[0]?.toFixed(2) ?? '?'
  try {
    for (const m of MODES) await batch(proxy.data[m].ip, proxy.data[m].port, Math.ceil(conns / 4), concurrency) // warm-up
    if (values.strace === true) {
      const rows: SyscallCounts[] = []
      for (const m of MODES) {
        const text = await straced(proxy.pid, async () => { await batch(proxy.data[m].ip, proxy.data[m].port, conns, concurrency) })
        rows.push({ target: m, units: conns, ...parseStraceSummary(text) })
      }
      process.stdout.write(`strace -c -f -p PID (engine ${engine}), ${conns} connections per mode, ${concurrency} at a time\n\n${countsTable(rows, 'connection')}\n`)
      return
    }
    const perConn: Record<Mode, number[]> = { off: [], ctl: [], v1: [], v2: [] }
    const userPer: Record<Mode, number[]> = { off: [], ctl: [], v1: [], v2: [] }
    let failed = 0
    for (let r = 0; r < rounds; r++) {
      const order = MODES.map((_, i) => MODES[(i + r) % MODES.length] as Mode)
      for (const m of order) {
        const c0 = await proxy.cpu()
        failed += await batch(proxy.data[m].ip, proxy.data[m].port, conns, concurrency)
        const c1 = await proxy.cpu()
        perConn[m].push((c1.user + c1.system - c0.user - c0.system) / conns)
        userPer[m].push((c1.user - c0.user) / conns)
      }
    }
    // Paired within a round, against the mean of the two header-less services (off and ctl).
    const base = perConn.off.map((x, i) => (x + (perConn.ctl[i] as number)) / 2)
    const ratio = (m: Mode): number => median(perConn[m].map((x, i) => x / (m === 'ctl' || m === 'off' ? (perConn.off[i] as number) : (base[i] as number))))
    const lines = [
      `svcproxy PROXY protocol bench (${quick ? 'quick' : 'full'}, engine ${engine}) — ${cpus()[0]?.model ?? 'unknown'}, ${cpus().length} cores, node ${process.version}, loadavg ${load0} before`,
      `${rounds} rounds × ${conns} connections per mode, ${concurrency} at a time, interleaved; proxy process CPU (user+sys) per connection; v1/v2 against the mean of off and ctl in the same round, ctl against off`,
      '',
      'mode  µs/conn (median)  user  sys  rounds (µs/conn)                          vs off (median of paired ratios)',
    ]
    for (const m of MODES) {
      lines.push(`${m.padEnd(5)} ${median(perConn[m]).toFixed(1).padStart(16)}  ${median(userPer[m]).toFixed(0).padStart(4)} ${median(perConn[m].map((x, i) => x - (userPer[m][i] as number))).toFixed(0).padStart(4)}  ${perConn[m].map((x) => x.toFixed(0)).join(' ').padEnd(40)}  ${m === 'off' ? '' : `${((ratio(m) - 1) * 100).toFixed(1)}%`}`)
    }
    lines.push('', `failed connections: ${failed}; ctl is off again (no header): its ratio is this run's noise`, `target: v1 and v2 within 5% of off: ${ratio('v1') <= 1.05 && ratio('v2') <= 1.05 ? 'met' : 'NOT met'}`)
    process.stdout.write(lines.join('\n') + '\n')
  } finally {
    await proxy.stop()
    for (const e of eps) e.server.close()
  }
}

if (process.env.BENCH_CONFIG !== undefined) child().catch(failToParent)
else parent().catch((err: unknown) => { process.stderr.write(`${String((err as Error).stack ?? err)}\n`); process.exit(1) })
