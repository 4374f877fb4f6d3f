// svcproxy beside the JavaScript floor (bench/proxy-bare.ts: the same libuv handles, nothing
// else) and nginx stream, one run, repetitions interleaved: proxy CPU per request on keep-alive
// and on one connection per request (issue 17: how much of the gap to nginx is svcproxy's own).
//   node dist/bench/floor.js [--requests 40000] [--connections 4000] [--reps 5]
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { type Backends, type Child, type ProxyAddresses, startChild } from './child.js'
import { missing, startExternal } from './external.js'
import { httpClose, httpKeepAlive } from './workloads.js'

const median = (xs: number[]): number => { const v = [...xs].sort((a, b) => a - b); return v[v.length >> 1] as number }

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { requests: { type: 'string', default: '40000' }, connections: { type: 'string', default: '4000' }, reps: { type: 'string', default: '5' } } })
  const reps = Number(values.reps)
  const children: Array<Child<unknown>> = []
  try {
    const backends = await startChild<Backends>('backends', 'backends', {})
    children.push(backends)
    const procs: Array<[string, Child<ProxyAddresses>]> = [
      ['svcproxy', await startChild<ProxyAddresses>('svcproxy', 'proxy-svcproxy', backends.data)],
      ['bare', await startChild<ProxyAddresses>('bare', 'proxy-bare', backends.data)],
    ]
    if (missing('nginx') === '') procs.push(['nginx', await startExternal('nginx', backends.data)])
    for (const [, p] of procs) children.push(p)
    for (const [workload, unit] of [['http-keepalive', 'request'], ['http-close', 'connection']] as const) {
      const run = async (p: Child<ProxyAddresses>): Promise<number> => {
        const ep = p.data.http
        if (ep === null) throw new Error('no http address')
        return workload === 'http-close' ? (await httpClose(ep, Number(values.connections), 50)).count : (await httpKeepAlive(ep, Number(values.requests), 50)).count
      }
      const per = new Map<string, number[]>()
      for (const [, p] of procs) await run(p)
      for (let i = 0; i < reps; i++) {
        for (const [name, p] of procs) {
          const a = await p.cpu()
          const n = await run(p)
          const b = await p.cpu()
          const us = (b.total ?? b.user + b.system) - (a.total ?? a.user + a.system)
          per.set(name, [...(per.get(name) ?? []), us / n])
        }
      }
      const nginx = per.has('nginx') ? median(per.get('nginx') as number[]) : null
      process.stdout.write(`${workload}: proxy CPU per ${unit}, median of ${reps} (each repetition)\n`)
      for (const [name] of procs) {
        const xs = per.get(name) as number[]
        const m = median(xs)
        process.stdout.write(`  ${name.padEnd(9)} ${m.toFixed(1).padStart(6)} µs${nginx === null ? '' : `  ${(m / nginx).toFixed(2)}× nginx`}  (${xs.map((x) => x.toFixed(1)).join(' ')})\n`)
      }
    }
  } finally {
    await Promise.all(children.map((c) => c.stop()))
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => { process.stderr.write(`floor: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`); process.exit(1) })
}
