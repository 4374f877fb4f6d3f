// The load generators. They run in the bench's main process; each returns what it measured
// (count of work units, wall time, latency percentiles in ms, errors).
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { connect } from 'node:net'
import { performance } from 'node:perf_hooks'
import autocannon from 'autocannon'
import type { Endpoint } from './child.js'

export interface Measured {
  /** Work units completed: requests, bytes, or datagram pairs. */
  count: number
  seconds: number
  p50Ms: number | null
  p99Ms: number | null
  /** Failed units (HTTP errors/non-2xx/timeouts, short bulk transfers, lost datagrams). */
  errors: number
}

export function percentile (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i] as number
}

function latencies (samples: number[]): { p50: number, p99: number } {
  const a = Float64Array.from(samples).sort()
  return { p50: percentile(a, 50), p99: percentile(a, 99) }
}

/** HTTP/1.1 keep-alive: autocannon, `connections` connections, exactly `amount` requests. */
export async function httpKeepAlive (ep: Endpoint, amount: number, connections: number): Promise<Measured> {
  // sampleInt: autocannon notices that `amount` is reached only on a sample tick (1 s by default),
  // which would pad the wall time (and the rate) by up to a second.
  const r = await autocannon({ url: `http://${ep.ip}:${ep.port}/`, connections: Math.min(connections, amount), amount, timeout: 10, sampleInt: 20 })
  const count = r.latency.totalCount ?? r.requests.total
  return {
    count,
    seconds: r.duration,
    // autocannon's histogram has 1 ms resolution.
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    errors: r.errors + r.timeouts + r.non2xx + r.mismatches + Math.max(0, amount - count),
  }
}

const CLOSE_REQUEST = Buffer.from('GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n')
const OK = Buffer.from('HTTP/1.1 200')

/**
 * One new TCP connection per request: connect, send a `Connection: close` request, read until the
 * server's FIN. Latency is connect start → response end. (Not autocannon: with a
 * `connection: close` header autocannon pipelines the next request onto the closing socket,
 * loses every other request and reports the latency of a stale queue.)
 */
export async function httpClose (ep: Endpoint, amount: number, concurrency: number): Promise<Measured> {
  const samples: number[] = []
  let errors = 0
  let issued = 0
  const one = (): Promise<void> => new Promise((resolve) => {
    const t0 = performance.now()
    const s = connect({ host: ep.ip, port: ep.port, noDelay: true })
    let head: Buffer | null = null
    let failed = false
    s.on('connect', () => { s.write(CLOSE_REQUEST) })
    s.on('data', (c: Buffer) => { if (head === null) head = c })
    s.on('end', () => {
      if (head !== null && head.subarray(0, OK.length).equals(OK)) samples.push(performance.now() - t0)
      else failed = true
    })
    s.on('error', () => { failed = true })
    s.on('close', () => {
      if (failed || head === null) errors++
      resolve()
    })
  })
  const worker = async (): Promise<void> => {
    while (issued < amount) {
      issued++
      await one()
    }
  }
  const start = performance.now()
  await Promise.all(Array.from({ length: Math.min(concurrency, amount) }, worker))
  const seconds = (performance.now() - start) / 1000
  const l = latencies(samples)
  return { count: samples.length, seconds, p50Ms: l.p50, p99Ms: l.p99, errors }
}

/**
 * One TCP stream of `bytes` to the sink (64 KiB writes, respecting backpressure), then FIN; the
 * sink answers with the count it received. Time is connect start → the sink's answer.
 */
export function bulk (ep: Endpoint, bytes: number): Promise<Measured> {
  const CHUNK = 64 * 1024
  const chunk = Buffer.alloc(CHUNK, 0x61)
  return new Promise((resolve) => {
    const t0 = performance.now()
    const s = connect({ host: ep.ip, port: ep.port, allowHalfOpen: true })
    let sent = 0
    let reply = ''
    let failed = false
    const pump = (): void => {
      while (sent < bytes) {
        const n = Math.min(CHUNK, bytes - sent)
        sent += n
        if (!s.write(n === CHUNK ? chunk : chunk.subarray(0, n))) { s.once('drain', pump); return }
      }
      s.end()
    }
    s.on('connect', pump)
    s.setEncoding('latin1')
    s.on('data', (c: string) => { reply += c })
    s.on('error', () => { failed = true })
    s.on('close', () => {
      const seconds = (performance.now() - t0) / 1000
      const got = Number.parseInt(reply, 10)
      const ok = !failed && got === bytes
      resolve({ count: ok ? bytes : (Number.isFinite(got) ? got : 0), seconds, p50Ms: null, p99Ms: null, errors: ok ? 0 : 1 })
    })
  })
}

/**
 * UDP closed loop: `clients` sockets, each keeping `window` datagrams (64 bytes) in flight; every
 * echo sends the next one, until `total` pairs are done. A datagram with no echo after 500 ms
 * counts as lost and is replaced.
 */
export async function udpClosedLoop (ep: Endpoint, total: number, clients: number, window: number, limitMs = 120_000): Promise<Measured> {
  const LOSS_MS = 500
  const SIZE = 64
  const rtts: number[] = []
  let sent = 0
  let done = 0
  let lost = 0
  const socks: UdpSocket[] = []
  const pendings: Array<Map<number, number>> = []
  let finish: () => void = () => {}
  const finished = new Promise<void>((resolve) => { finish = resolve })
  const check = (): void => { if (done + lost >= total) finish() }

  const send = (i: number): void => {
    if (sent >= total) return
    const seq = sent++
    const buf = Buffer.alloc(SIZE)
    buf.writeUInt32LE(seq, 0)
    ;(pendings[i] as Map<number, number>).set(seq, performance.now())
    ;(socks[i] as UdpSocket).send(buf)
  }

  for (let i = 0; i < clients; i++) {
    const u = createSocket('udp4')
    const pending = new Map<number, number>()
    u.on('error', () => {})
    u.on('message', (msg: Buffer) => {
      if (msg.length < 4) return
      const seq = msg.readUInt32LE(0)
      const t0 = pending.get(seq)
      if (t0 === undefined) return // late echo of a datagram already counted lost
      pending.delete(seq)
      rtts.push(performance.now() - t0)
      done++
      send(i)
      check()
    })
    await new Promise<void>((resolve) => u.bind(0, '127.0.0.1', resolve))
    await new Promise<void>((resolve, reject) => u.connect(ep.port, ep.ip, (err?: Error) => { if (err) reject(err); else resolve() }))
    socks.push(u)
    pendings.push(pending)
  }

  const start = performance.now()
  const sweeper = setInterval(() => {
    const now = performance.now()
    for (let i = 0; i < clients; i++) {
      const pending = pendings[i] as Map<number, number>
      for (const [seq, t0] of pending) {
        if (now - t0 > LOSS_MS) { pending.delete(seq); lost++; send(i) }
      }
    }
    check()
  }, 100)
  const limit = setTimeout(() => { lost += total - done - lost; finish() }, limitMs)
  for (let w = 0; w < window; w++) for (let i = 0; i < clients; i++) send(i)
  await finished
  const seconds = (performance.now() - start) / 1000
  clearInterval(sweeper)
  clearTimeout(limit)
  for (const u of socks) u.close()
  const l = latencies(rtts)
  return { count: done, seconds, p50Ms: l.p50, p99Ms: l.p99, errors: lost }
}

const KEEPALIVE_REQUEST = Buffer.from('GET / HTTP/1.1\r\nHost: bench\r\n\r\n')
const BODY_END = 'hello world\n'

/**
 * Added-latency probe: `connections` keep-alive connections, each sending its next request only
 * when the previous response is in (no queue anywhere), `perConnection` requests each. Each
 * request is timed with process.hrtime.bigint() (ns), so p50/p99 resolve single µs, unlike
 * autocannon's 1 ms histogram. A response is complete when its 12-byte body has arrived (the
 * backends' answer is fixed, bench/backends.ts).
 */
export async function httpSequential (ep: Endpoint, perConnection: number, connections: number): Promise<Measured> {
  const samples: number[] = []
  let errors = 0
  const one = (): Promise<void> => new Promise((resolve) => {
    const s = connect({ host: ep.ip, port: ep.port, noDelay: true })
    let left = perConnection
    let t0 = 0n
    let got = ''
    const next = (): void => {
      if (left-- === 0) { s.end(); return }
      got = ''
      t0 = process.hrtime.bigint()
      s.write(KEEPALIVE_REQUEST)
    }
    s.setEncoding('latin1')
    s.on('connect', next)
    s.on('data', (c: string) => {
      got += c
      if (!got.endsWith(BODY_END)) return
      samples.push(Number(process.hrtime.bigint() - t0) / 1e6)
      if (!got.startsWith('HTTP/1.1 200')) errors++
      next()
    })
    s.on('error', () => { errors++ })
    s.on('close', () => { if (left > 0) errors += left; resolve() })
  })
  const start = performance.now()
  await Promise.all(Array.from({ length: connections }, one))
  const seconds = (performance.now() - start) / 1000
  const l = latencies(samples)
  return { count: samples.length, seconds, p50Ms: l.p50, p99Ms: l.p99, errors }
}
