// Issue 14, part 2's measure: three endpoints, one blackholed (a listener whose accept queue is
// full, so the kernel drops further SYNs and a dial hangs until the ladder's 250 ms rung gives
// up), 2,000 sequential connections through an in-process svcproxy. Connect time = the client's
// connect() until the endpoint's first byte (its name): the proxy's whole dial ladder included.
// Three runs: all healthy (the third endpoint answers), blackholed with outlier ejection off
// (svcproxy.io/outlier-consecutive-failures: off, kube-proxy's behaviour), blackholed with it on
// (the defaults: 5 failures in a row, 30 s base ejection).
//   npx tsc -p tsconfig.build.json && node dist/bench/blackhole.js [--connections 2000] [--out FILE]
// Needs python3 (it holds the blackholed socket: Node always accepts).
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, writeFileSync } from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import { cpus, loadavg } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { createProxy } from '../lib/index.js'

interface Ep { ip: string, port: number }

async function nameServer (ip: string, name: string): Promise<{ ep: Ep, server: Server }> {
  const server = createServer((s) => { s.on('error', () => {}); s.end(name) })
  server.listen(0, ip)
  await once(server, 'listening')
  const a = server.address()
  if (a === null || typeof a === 'string') throw new Error('no address')
  return { ep: { ip, port: a.port }, server }
}

/** A listener with backlog 0 whose accept queue is filled by connections nobody accepts: SYNs to it are dropped. */
async function blackhole (ip: string): Promise<{ ep: Ep, child: ChildProcess }> {
  const py = `import socket,sys,time\ns=socket.socket()\ns.bind(("${ip}",0))\ns.listen(0)\nfill=[]\nfor i in range(4):\n  c=socket.socket(); c.setblocking(False)\n  try: c.connect(("${ip}",s.getsockname()[1]))\n  except BlockingIOError: pass\n  fill.append(c)\ntime.sleep(0.3)\nprint(s.getsockname()[1],flush=True)\nsys.stdin.read()\n`
  const child = spawn('python3', ['-c', py], { stdio: ['pipe', 'pipe', 'inherit'] })
  child.on('error', (err) => { console.error(`bench/blackhole.ts needs python3: ${err.message}`); process.exit(1) })
  const [line] = await once(child.stdout!, 'data') as [Buffer]
  return { ep: { ip, port: Number(line.toString().trim()) }, child }
}

function objects (name: string, clusterIP: string, eps: Ep[], annotations: Record<string, string>): unknown[] {
  return [
    { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default', annotations }, spec: { clusterIP, ports: [{ port: 80, protocol: 'TCP' }] } },
    { apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: 'default' }, subsets: eps.map((e) => ({ addresses: [{ ip: e.ip }], ports: [{ port: e.port, protocol: 'TCP' }] })) },
  ]
}

/** One connection: ms from connect() to the first byte, or -1 when it failed (reset, no byte). */
function once1 (host: string, port: number): Promise<number> {
  return new Promise((resolve) => {
    const t0 = performance.now()
    let first = -1
    const s = connect({ host, port })
    s.on('data', () => { if (first < 0) first = performance.now() - t0 })
    s.on('error', () => {})
    s.on('close', () => resolve(first))
  })
}

interface Result { run: string, connections: number, failed: number, p50Ms: number, p99Ms: number, maxMs: number, over200Ms: number, ejections: number, seconds: number }

function quantile (sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number
}

async function run (label: string, eps: Ep[], annotations: Record<string, string>, n: number, clusterIP: string): Promise<Result> {
  const p = createProxy({ ephemeralPorts: true, logger: pino({ level: 'silent' }) })
  try {
    await p.apply(objects('bh', clusterIP, eps, annotations))
    const a = p.address('default/bh', 80)
    const times: number[] = []
    let failed = 0
    const t0 = performance.now()
    for (let i = 0; i < n; i++) {
      const ms = await once1(a.address, a.port)
      if (ms < 0) failed++
      else times.push(ms)
    }
    const seconds = (performance.now() - t0) / 1000
    times.sort((x, y) => x - y)
    const rt = [...p.dataplane.runtimes.values()][0]
    return { run: label, connections: n, failed, p50Ms: quantile(times, 0.5), p99Ms: quantile(times, 0.99), maxMs: times[times.length - 1] ?? Number.NaN, over200Ms: times.filter((x) => x > 200).length, ejections: rt?.ejectionsTotal ?? 0, seconds }
  } finally {
    await p.close()
  }
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { connections: { type: 'string', default: '2000' }, runs: { type: 'string', default: 'healthy,off,on' }, out: { type: 'string' } } })
  const n = Number(values.connections)
  const runs = new Set((values.runs ?? '').split(','))
  const a = await nameServer('127.0.160.1', 'a')
  const b = await nameServer('127.0.160.2', 'b')
  const c = await nameServer('127.0.160.3', 'c')
  const dead = await blackhole('127.0.160.4')
  try {
    const rows: Result[] = []
    // --runs healthy,on,healthy,on interleaves repetitions (the off run takes 1,000 × 250 ms).
    for (const r of (values.runs ?? '').split(',')) {
      if (r === 'healthy') rows.push(await run('all healthy', [a.ep, b.ep, c.ep], {}, n, '127.96.160.1'))
      else if (r === 'off') rows.push(await run('blackholed, ejection off', [a.ep, b.ep, dead.ep], { 'svcproxy.io/outlier-consecutive-failures': 'off' }, n, '127.96.160.2'))
      else if (r === 'on') rows.push(await run('blackholed, ejection on (defaults)', [a.ep, b.ep, dead.ep], {}, n, '127.96.160.3'))
      else throw new Error(`--runs: expected healthy, off or on, got "${r}"`)
    }
    const f = (x: number): string => (Number.isNaN(x) ? '-' : x.toFixed(2))
    console.log(`${n} sequential connections, three endpoints; connect() to first byte, ms (${cpus().length} CPUs, load ${loadavg()[0]?.toFixed(2) ?? '?'})`)
    console.log(['run'.padEnd(36), 'p50'.padStart(8), 'p99'.padStart(8), 'max'.padStart(8), '>200ms'.padStart(7), 'failed'.padStart(7), 'ejections'.padStart(10), 'seconds'.padStart(8)].join(''))
    for (const r of rows) console.log([r.run.padEnd(36), f(r.p50Ms).padStart(8), f(r.p99Ms).padStart(8), f(r.maxMs).padStart(8), String(r.over200Ms).padStart(7), String(r.failed).padStart(7), String(r.ejections).padStart(10), r.seconds.toFixed(1).padStart(8)].join(''))
    const med = (label: string): number => quantile(rows.filter((r) => r.run === label).map((r) => r.p99Ms).sort((x, y) => x - y), 0.5)
    const on = rows.filter((r) => r.run.startsWith('blackholed, ejection on'))
    if (runs.has('healthy') && on.length > 0) {
      console.log(`ejection on vs all healthy: p99 ${(med(on[0]?.run ?? '') / med('all healthy')).toFixed(2)}x (medians of the runs; target <= 2x), ${on.reduce((x, r) => x + r.failed, 0)} failed (target 0)`)
    }
    const here = dirname(fileURLToPath(import.meta.url))
    const out = values.out ?? join(resolve(here, '..', '..', 'bench', 'results'), 'blackhole.json')
    mkdirSync(dirname(out), { recursive: true })
    writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), connections: n, rows }, null, 2)}\n`)
  } finally {
    a.server.close()
    b.server.close()
    c.server.close()
    dead.child.kill('SIGKILL')
  }
}

await main()
