// Faults (issue 13.1): how accurate a latency toxic is, and what the fault path costs.
//  1. Latency accuracy: `requests` request/response round trips (a few bytes each way, over
//     `conns` connections at once) through an echo endpoint, with no toxic and then with a
//     `latency` toxic of `latency` ms downstream. Added latency = p50(with) - p50(without);
//     goal: latency ± 5 ms at p50 (issue 13: 100 ms ± 5 ms over 200 requests).
//  2. Cost: short connections per second and bulk MB/s on a port with no toxic (the engine's own
//     path) and on a port whose only toxic never applies (toxicity 0: the fault path, nothing
//     done). A port without toxics pays one field check per accept and per dial, nothing per byte.
// One process, loopback, port 0 everywhere.
//   node dist/bench/faults.js [--latency 100] [--requests 200] [--conns 10] [--json]
import { once } from 'node:events'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createProxy, type ServiceProxy } from '../lib/index.js'

export interface FaultFigures {
  latencyMs: number
  requests: number
  baseP50Ms: number
  withP50Ms: number
  withP90Ms: number
  addedP50Ms: number
  /** |added - latency| <= 5 ms. */
  accurate: boolean
  connsPerSec: { plain: number, faultPath: number }
  bulkMBps: { plain: number, faultPath: number }
}

function pct (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? 0
}

async function listen (s: Server): Promise<number> {
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  return (s.address() as { port: number }).port
}

let nextIP = 1

function service (name: string, port: number): unknown[] {
  return [
    { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { clusterIP: `127.77.0.${nextIP++}`, ports: [{ port: 80 }] } },
    { apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: 'default' }, subsets: [{ addresses: [{ ip: '127.0.0.1' }], ports: [{ port }] }] },
  ]
}

/** Round trips of `msg` on one connection, `n` of them one after another; ms each. */
async function roundTrips (p: ServiceProxy, svc: string, n: number): Promise<number[]> {
  const a = p.address(svc, 80)
  const s = connect(a.port, a.address)
  s.setNoDelay(true)
  await once(s, 'connect')
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const start = performance.now()
    s.write('ping')
    let got = 0
    while (got < 4) got += ((await once(s, 'data')) as [Buffer])[0].length
    out.push(performance.now() - start)
  }
  s.destroy()
  return out
}

async function latencies (p: ServiceProxy, svc: string, requests: number, conns: number): Promise<number[]> {
  const per = Math.ceil(requests / conns)
  return (await Promise.all(Array.from({ length: conns }, async () => await roundTrips(p, svc, per)))).flat()
}

/** Connections per second: connect, read the endpoint's 1-byte reply to its end, 20 at a time, for `ms`. */
async function connRate (p: ServiceProxy, svc: string, ms: number): Promise<number> {
  const a = p.address(svc, 80)
  const end = performance.now() + ms
  let n = 0
  const one = async (): Promise<void> => {
    while (performance.now() < end) {
      const s: Socket = connect(a.port, a.address)
      s.resume()
      await once(s, 'close')
      n++
    }
  }
  const start = performance.now()
  await Promise.all(Array.from({ length: 20 }, one))
  return Math.round(n / ((performance.now() - start) / 1000))
}

/** MB/s of `mb` MB from the endpoint to one client. */
async function bulk (p: ServiceProxy, svc: string): Promise<number> {
  const a = p.address(svc, 80)
  const start = performance.now()
  const s = connect(a.port, a.address)
  s.write('b')
  let got = 0
  s.on('data', (c: Buffer) => { got += c.length })
  await once(s, 'close')
  return Math.round(got / 1e6 / ((performance.now() - start) / 1000))
}

export async function runFaults (latencyMs = 100, requests = 200, conns = 10): Promise<FaultFigures> {
  const echo = createServer((s) => { s.on('error', () => {}); s.pipe(s) })
  const byte = createServer((s) => { s.on('error', () => {}); s.end('x') })
  const chunk = Buffer.alloc(64 * 1024, 1)
  const big = createServer((s) => {
    s.on('error', () => {})
    s.once('data', () => {
      let left = 512 // 32 MiB
      const more = (): void => { while (left > 0) { left--; if (!s.write(chunk)) { s.once('drain', more); return } } s.end() }
      more()
    })
  })
  const [pe, pb, pg] = [await listen(echo), await listen(byte), await listen(big)]
  const p = createProxy({ ephemeralPorts: true })
  try {
    await p.apply([...service('echo', pe), ...service('lat', pe), ...service('byte', pb), ...service('byte-f', pb), ...service('big', pg), ...service('big-f', pg)])
    p.faults.add({ service: 'default/lat' }, { type: 'latency', attributes: { latency: latencyMs } })
    for (const s of ['default/byte-f', 'default/big-f']) p.faults.add({ service: s }, { type: 'latency', toxicity: 0, attributes: { latency: 1000 } })
    await latencies(p, 'default/echo', 50, 5) // warm-up
    const base = await latencies(p, 'default/echo', requests, conns)
    const lat = await latencies(p, 'default/lat', requests, conns)
    const baseP50 = pct(base, 0.5)
    const withP50 = pct(lat, 0.5)
    const added = withP50 - baseP50
    const plainC = await connRate(p, 'default/byte', 2000)
    const faultC = await connRate(p, 'default/byte-f', 2000)
    const plainB = await bulk(p, 'default/big')
    const faultB = await bulk(p, 'default/big-f')
    return {
      latencyMs,
      requests: lat.length,
      baseP50Ms: round(baseP50),
      withP50Ms: round(withP50),
      withP90Ms: round(pct(lat, 0.9)),
      addedP50Ms: round(added),
      accurate: Math.abs(added - latencyMs) <= 5,
      connsPerSec: { plain: plainC, faultPath: faultC },
      bulkMBps: { plain: plainB, faultPath: faultB },
    }
  } finally {
    await p.close()
    echo.close()
    byte.close()
    big.close()
  }
}

function round (x: number): number {
  return Math.round(x * 100) / 100
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { latency: { type: 'string', default: '100' }, requests: { type: 'string', default: '200' }, conns: { type: 'string', default: '10' }, json: { type: 'boolean', default: false } } })
  const f = await runFaults(Number(values.latency), Number(values.requests), Number(values.conns))
  if (values.json === true) { console.log(JSON.stringify(f)); return }
  console.log(`latency toxic ${f.latencyMs} ms over ${f.requests} requests: p50 ${f.withP50Ms} ms (no toxic ${f.baseP50Ms} ms) → added ${f.addedP50Ms} ms at p50, p90 ${f.withP90Ms} ms; ${f.accurate ? 'within' : 'OUTSIDE'} ±5 ms`)
  console.log(`short connections/s: ${f.connsPerSec.plain} no toxic, ${f.connsPerSec.faultPath} fault path (toxicity 0)`)
  console.log(`bulk 32 MiB: ${f.bulkMBps.plain} MB/s no toxic, ${f.bulkMBps.faultPath} MB/s fault path (toxicity 0)`)
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => { console.error(err); process.exit(1) })
}
