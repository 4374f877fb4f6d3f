// Syscalls per unit of work, svcproxy beside nginx stream and HAProxy (issue 17 part 2):
// `strace -c -f -p PID` attached to each proxy process in turn while the same workload runs
// through it, then each count divided by the units done. strace slows the traced process a lot,
// so these runs are for counting, never for timing.
//   node dist/bench/syscalls.js [--workload http-close|http-keepalive|udp] [--count 5000] [--targets svcproxy,nginx,nginx-hc,haproxy,naive]
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { type Backends, type Child, type ProxyAddresses, startChild } from './child.js'
import { type ExternalName, missing, startExternal } from './external.js'
import { httpClose, httpKeepAlive, udpClosedLoop } from './workloads.js'

export interface SyscallCounts { target: string, units: number, calls: Record<string, number>, errors: Record<string, number> }

/** Parses `strace -c` output: calls and errors per syscall. */
export function parseStraceSummary (text: string): { calls: Record<string, number>, errors: Record<string, number> } {
  const calls: Record<string, number> = {}
  const errors: Record<string, number> = {}
  for (const line of text.split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*([a-z_0-9]+)\s*$/.exec(line)
    if (m === null || m[3] === 'total') continue
    calls[m[3] as string] = Number(m[1])
    if (m[2] !== undefined) errors[m[3] as string] = Number(m[2])
  }
  return { calls, errors }
}

async function traced (pid: number, run: () => Promise<number>): Promise<{ units: number, text: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'svcproxy-strace-'))
  const out = join(dir, 'summary')
  const st = spawn('strace', ['-c', '-f', '-p', String(pid), '-o', out], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  st.stderr.on('data', (c: Buffer) => { err += c.toString() })
  // strace prints "Process N attached" once it is in.
  const t0 = Date.now()
  while (!err.includes('attached')) {
    if (st.exitCode !== null) throw new Error(`strace: ${err.trim()}`)
    if (Date.now() - t0 > 10_000) throw new Error(`strace: not attached after 10 s: ${err.trim()}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  await new Promise((resolve) => setTimeout(resolve, 200))
  const units = await run()
  st.kill('SIGINT')
  await once(st, 'exit')
  const text = readFileSync(out, 'utf8')
  rmSync(dir, { recursive: true, force: true })
  return { units, text }
}

export function countsTable (rows: SyscallCounts[], unit: string): string {
  const names = new Set<string>()
  for (const r of rows) for (const n of Object.keys(r.calls)) if (r.calls[n] as number / r.units >= 0.05) names.add(n)
  const sorted = [...names].sort((a, b) => Math.max(...rows.map((r) => (r.calls[b] ?? 0) / r.units)) - Math.max(...rows.map((r) => (r.calls[a] ?? 0) / r.units)))
  const head = [`syscall per ${unit}`, ...rows.map((r) => r.target)]
  const cell = (r: SyscallCounts, n: string): string => {
    const c = (r.calls[n] ?? 0) / r.units
    const e = (r.errors[n] ?? 0) / r.units
    return c === 0 ? '-' : `${c.toFixed(2)}${e >= 0.01 ? ` (${e.toFixed(2)} fail)` : ''}`
  }
  const body = sorted.map((n) => [n, ...rows.map((r) => cell(r, n))])
  const total = (r: SyscallCounts): number => Object.values(r.calls).reduce((a, b) => a + b, 0) / r.units
  body.push(['total', ...rows.map((r) => total(r).toFixed(2))])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)))
  const line = (c: string[]): string => c.map((x, i) => (i === 0 ? x.padEnd(widths[i] ?? 0) : x.padStart(widths[i] ?? 0))).join('  ')
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n')
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { workload: { type: 'string', default: 'http-close' }, count: { type: 'string' }, targets: { type: 'string', default: 'svcproxy,nginx,haproxy' } } })
  const workload = values.workload as string
  if (workload !== 'http-close' && workload !== 'http-keepalive' && workload !== 'udp') throw new Error('--workload: http-close, http-keepalive or udp')
  const count = Number(values.count ?? (workload === 'http-close' ? 5000 : 50_000))
  const children: Array<Child<unknown>> = []
  try {
    const backends = await startChild<Backends>('backends', 'backends', {})
    children.push(backends)
    const rows: SyscallCounts[] = []
    for (const target of (values.targets as string).split(',')) {
      let proc: Child<ProxyAddresses>
      if (target === 'svcproxy') proc = await startChild<ProxyAddresses>('svcproxy', 'proxy-svcproxy', backends.data)
      else if (target === 'naive') proc = await startChild<ProxyAddresses>('naive', workload === 'udp' ? 'udp-naive' : 'proxy-naive', backends.data)
      else {
        // nginx-hc: nginx with proxy_half_close on, which keeps a connection until both FINs, as svcproxy and HAProxy do.
        const name = (target === 'nginx-hc' ? 'nginx' : target) as ExternalName
        const why = missing(name)
        if (why !== '') { process.stderr.write(`${target}: ${why}\n`); continue }
        proc = await startExternal(name, backends.data, 4096, { halfClose: target === 'nginx-hc' })
      }
      children.push(proc)
      const ep = workload === 'udp' ? proc.data.udp : proc.data.http
      if (ep === null) { await proc.stop(); continue }
      const run = async (): Promise<number> => workload === 'http-close' ? (await httpClose(ep, count, 50)).count : workload === 'udp' ? (await udpClosedLoop(ep, count, 8, 8)).count : (await httpKeepAlive(ep, count, 50)).count
      await run() // warm-up, untraced
      const { units, text } = await traced(proc.pid, run)
      rows.push({ target, units, ...parseStraceSummary(text) })
      await proc.stop()
    }
    const unit = workload === 'http-close' ? 'connection' : workload === 'udp' ? 'datagram pair' : 'request'
    process.stdout.write(`strace -c -f -p PID, ${workload}, ${count} units (${workload === 'udp' ? '8 clients x 8 in flight' : '50 at a time'}) per target\n\n${countsTable(rows, unit)}\n`)
  } finally {
    await Promise.all(children.map((c) => c.stop()))
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => { process.stderr.write(`syscalls: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`); process.exit(1) })
}
