// Memory per idle established pair (issue 17 part 3), svcproxy beside nginx stream and HAProxy:
// each proxy in turn is given N client connections, each proxied to a backend that greets it
// with one byte (so the pair is established end to end), then everything sits idle. The figure
// is the proxy process's resident memory (VmRSS, /proc) after the pairs are up minus before,
// divided by N. The kernel's socket buffers are not in RSS, and are the same for every proxy.
//   node dist/bench/idle.js [--pairs 9900] [--targets svcproxy,nginx,haproxy]
// 9,900 rather than 10,000: a pair costs the proxy two descriptors, and this machine's limit is
// 20,000 per process.
import { once } from 'node:events'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { type Child, type Endpoint, type ProxyAddresses, startChild } from './child.js'
import { type ExternalName, missing, procRssKiB, startExternal } from './external.js'

export interface IdleFigure { target: string, pairs: number, rssBeforeKiB: number, rssAfterKiB: number, perPairKiB: number }

/** A backend that greets every connection with one byte and holds it. */
async function holdingBackend (ip: string): Promise<{ server: Server, ep: Endpoint, sockets: Set<Socket> }> {
  const sockets = new Set<Socket>()
  const server = createServer((s) => {
    sockets.add(s)
    s.on('error', () => {})
    s.on('close', () => sockets.delete(s))
    s.write('x')
  })
  server.maxConnections = 100_000
  server.listen({ host: ip, port: 0, backlog: 4096 })
  await once(server, 'listening')
  return { server, ep: { ip, port: (server.address() as { port: number }).port }, sockets }
}

/** Opens `n` connections to `ep`, `batch` at a time; each counts once its greeting byte is in. */
async function openIdle (ep: Endpoint, n: number, batch = 200): Promise<Socket[]> {
  const out: Socket[] = []
  let failed = 0
  const one = (): Promise<void> => new Promise((resolve) => {
    const s = connect({ host: ep.ip, port: ep.port })
    s.once('data', () => { out.push(s); resolve() })
    s.on('error', () => { failed++; resolve() })
  })
  for (let i = 0; i < n; i += batch) await Promise.all(Array.from({ length: Math.min(batch, n - i) }, one))
  if (failed > 0) throw new Error(`${failed} of ${n} idle connections failed (descriptor limit? ulimit -n)`)
  return out
}

const settle = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

export async function measureIdle (targets: string[], pairs: number, log: (s: string) => void): Promise<IdleFigure[]> {
  const backend = await holdingBackend('127.0.32.1')
  const figures: IdleFigure[] = []
  try {
    for (const target of targets) {
      let proc: Child<ProxyAddresses>
      const backends = { http: [backend.ep], bulk: [backend.ep], udp: [{ ip: '127.0.32.1', port: 9 }] }
      if (target === 'svcproxy') proc = await startChild<ProxyAddresses>('svcproxy', 'proxy-svcproxy', backends, ['--expose-gc'])
      else {
        const why = missing(target as ExternalName)
        if (why !== '') { log(`${target}: ${why}`); continue }
        proc = await startExternal(target as ExternalName, backends, pairs + 16)
      }
      try {
        const ep = proc.data.http as Endpoint
        // Warm-up: a few pairs opened and closed, so one-time allocations are in "before".
        for (const s of await openIdle(ep, 50)) s.destroy()
        await settle(300)
        await proc.gc?.()
        const before = procRssKiB(proc.pid)
        const socks = await openIdle(ep, pairs)
        await settle(1000)
        await proc.gc?.()
        const after = procRssKiB(proc.pid)
        const f = { target, pairs, rssBeforeKiB: before, rssAfterKiB: after, perPairKiB: (after - before) / pairs }
        figures.push(f)
        log(`${target}: ${pairs} idle pairs, RSS ${(before / 1024).toFixed(0)} → ${(after / 1024).toFixed(0)} MiB, ${f.perPairKiB.toFixed(1)} KiB per pair`)
        for (const s of socks) s.destroy()
        await settle(300)
      } finally {
        await proc.stop()
      }
    }
  } finally {
    for (const s of backend.sockets) s.destroy()
    backend.server.close()
  }
  return figures
}

export function idleReport (figures: IdleFigure[]): string {
  const rows = figures.map((f) => `${f.target.padEnd(9)} ${String(f.pairs).padStart(6)} pairs  RSS ${(f.rssBeforeKiB / 1024).toFixed(1).padStart(6)} → ${(f.rssAfterKiB / 1024).toFixed(1).padStart(6)} MiB  ${f.perPairKiB.toFixed(1).padStart(5)} KiB per idle pair`)
  return rows.join('\n')
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { pairs: { type: 'string', default: '9900' }, targets: { type: 'string', default: 'svcproxy,nginx,haproxy' } } })
  const figures = await measureIdle((values.targets as string).split(','), Number(values.pairs), (s) => process.stderr.write(`idle: ${s}\n`))
  process.stdout.write(`Memory per idle established pair (proxy RSS from /proc; svcproxy after a GC):\n${idleReport(figures)}\n`)
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => { process.stderr.write(`idle: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`); process.exit(1) })
}
