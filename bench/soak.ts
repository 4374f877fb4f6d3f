// `node dist/bench/soak.js [--duration 5m] [--sequential 100000]` (issue #8): a bounded soak.
// One in-process proxy; mixed TCP (echo, random sizes) and UDP (request/response) load from
// concurrent workers while the endpoint sets of both services churn every 50 ms (always at
// least one endpoint ready). Samples errors, RSS and open descriptors over time and prints a
// summary table. --sequential N then runs N sequential short connections and reports
// descriptor growth and CLOSE_WAIT (the 100,000 case of the fault matrix; the CI test runs 10,000).
// Figures are for the whole process: proxy, backends and load generator together.
import { randomBytes } from 'node:crypto'
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { once } from 'node:events'
import { readdirSync, readFileSync } from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { createProxy, parseDuration } from '../lib/index.js'

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '5m' },
    sequential: { type: 'string', default: '0' },
    'churn-ms': { type: 'string', default: '50' },
    'tcp-workers': { type: 'string', default: '8' },
    'udp-workers': { type: 'string', default: '4' },
    seed: { type: 'string' },
  },
})
const durationMs = parseDuration(values.duration ?? '5m', '--duration')
const sequential = Number(values.sequential)
const churnMs = Number(values['churn-ms'])
let seed = Number(values.seed ?? Date.now() % 2 ** 31)
const SEED = seed
const rand = (): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 2 ** 32 }

const fds = (): number => readdirSync('/proc/self/fd').length
const rssMiB = (): number => process.memoryUsage().rss / 2 ** 20

function closeWait (ports: Set<number>): number {
  let n = 0
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = ''
    try { text = readFileSync(f, 'utf8') } catch { continue }
    for (const line of text.split('\n').slice(1)) {
      const c = line.trim().split(/\s+/)
      if (c[3] !== '08') continue
      if (ports.has(parseInt(c[1]?.split(':')[1] ?? '', 16)) || ports.has(parseInt(c[2]?.split(':')[1] ?? '', 16))) n++
    }
  }
  return n
}

async function tcpEcho (host: string): Promise<{ server: Server, port: number }> {
  const server = createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); s.pipe(s) })
  server.listen(0, host)
  await once(server, 'listening')
  return { server, port: (server.address() as { port: number }).port }
}

async function udpEcho (host: string): Promise<{ sock: UdpSocket, port: number }> {
  const sock = createSocket('udp4')
  sock.on('error', () => {})
  sock.on('message', (m, r) => { sock.send(m, r.port, r.address) })
  sock.bind(0, host)
  await once(sock, 'listening')
  return { sock, port: sock.address().port }
}

function echoOnce (host: string, port: number, payload: Buffer): Promise<string | null> {
  return new Promise((resolve) => {
    let got = 0
    const chunks: Buffer[] = []
    const s = connect({ host, port }, () => { s.end(payload) })
    const timer = setTimeout(() => { s.destroy(); resolve('timeout') }, 10000)
    s.on('data', (c: Buffer) => { got += c.length; chunks.push(c) })
    s.on('error', (e: NodeJS.ErrnoException) => { clearTimeout(timer); resolve(e.code ?? 'error') })
    s.on('close', () => {
      clearTimeout(timer)
      if (s.errored) return
      resolve(got === payload.length && Buffer.concat(chunks).equals(payload) ? null : `short reply ${got}/${payload.length}`)
    })
  })
}

const svc = (name: string, ip: string, protocol: 'TCP' | 'UDP', eps: Array<{ ip: string, port: number }>): unknown[] => [
  { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'soak' }, spec: { clusterIP: ip, ports: [{ port: 80, protocol }] } },
  { apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: 'soak' }, subsets: eps.map((e) => ({ addresses: [{ ip: e.ip }], ports: [{ port: e.port, protocol }] })) },
]

async function main (): Promise<void> {
  const tcp = await Promise.all([1, 2, 3].map((i) => tcpEcho(`127.0.20.${i}`)))
  const udp = await Promise.all([1, 2, 3].map((i) => udpEcho(`127.0.21.${i}`)))
  const tcpEps = tcp.map((b, i) => ({ ip: `127.0.20.${i + 1}`, port: b.port }))
  const udpEps = udp.map((b, i) => ({ ip: `127.0.21.${i + 1}`, port: b.port }))
  const proxy = createProxy({ ephemeralPorts: true, logger: pino({ level: 'silent' }) })
  await proxy.apply([...svc('tcp', '127.56.0.1', 'TCP', tcpEps), ...svc('udp', '127.56.0.2', 'UDP', udpEps)])
  const ta = proxy.address('soak/tcp', 80)
  const ua = proxy.address('soak/udp', 80)
  const ports = new Set([ta.port, ...tcp.map((b) => b.port)])

  const c = { tcpOk: 0, tcpErr: 0, udpOk: 0, udpLost: 0, updates: 0 }
  const errors = new Map<string, number>()
  const startFds = fds()
  const startRss = rssMiB()
  const t0 = Date.now()
  const deadline = t0 + durationMs
  let stop = false

  const subset = <T>(xs: T[]): T[] => { const s = xs.filter(() => rand() < 0.6); return s.length > 0 ? s : [xs[Math.floor(rand() * xs.length)] as T] }
  const churn = (async () => {
    while (!stop) {
      await proxy.apply([...svc('tcp', '127.56.0.1', 'TCP', subset(tcpEps)), ...svc('udp', '127.56.0.2', 'UDP', subset(udpEps))])
      c.updates++
      await new Promise((resolve) => setTimeout(resolve, churnMs))
    }
  })()
  const tcpWorker = async (): Promise<void> => {
    while (!stop) {
      const r = await echoOnce(ta.address, ta.port, randomBytes(1 + Math.floor(rand() * 32768)))
      if (r === null) c.tcpOk++
      else { c.tcpErr++; errors.set(r, (errors.get(r) ?? 0) + 1) }
    }
  }
  const udpWorker = async (): Promise<void> => {
    const sock = createSocket('udp4')
    sock.on('error', () => {})
    sock.bind(0, '127.0.0.1')
    await once(sock, 'listening')
    let wake: ((m: Buffer) => void) | null = null
    sock.on('message', (m) => wake?.(m))
    while (!stop) {
      const msg = randomBytes(1 + Math.floor(rand() * 1400))
      const reply = await new Promise<Buffer | null>((resolve) => {
        const timer = setTimeout(() => { wake = null; resolve(null) }, 1000)
        wake = (m) => { if (m.equals(msg)) { clearTimeout(timer); wake = null; resolve(m) } }
        sock.send(msg, ua.port, ua.address)
      })
      if (reply === null) c.udpLost++
      else c.udpOk++
    }
    sock.close()
  }
  const workers = [
    ...Array.from({ length: Number(values['tcp-workers']) }, tcpWorker),
    ...Array.from({ length: Number(values['udp-workers']) }, udpWorker),
  ]

  const sampleMs = Math.max(1000, Math.floor(durationMs / 10))
  const rows: string[][] = [['t', 'tcp ok', 'tcp err', 'udp ok', 'udp lost', 'updates', 'open', 'RSS MiB', 'fds']]
  const sample = (): void => {
    rows.push([`${Math.round((Date.now() - t0) / 1000)}s`, String(c.tcpOk), String(c.tcpErr), String(c.udpOk), String(c.udpLost), String(c.updates), String(proxy.dataplane.openCount()), rssMiB().toFixed(1), String(fds())])
  }
  sample()
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(sampleMs, deadline - Date.now())))
    sample()
  }
  stop = true
  await Promise.all([churn, ...workers])
  for (let i = 0; i < 200 && proxy.dataplane.openCount() > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  sample()

  let seqLine = ''
  if (sequential > 0) {
    const before = fds()
    let seqErr = 0
    const s0 = Date.now()
    const one = Buffer.from('x')
    for (let i = 0; i < sequential; i++) if (await echoOnce(ta.address, ta.port, one) !== null) seqErr++
    for (let i = 0; i < 200 && proxy.dataplane.openCount() > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10))
    await new Promise((resolve) => setTimeout(resolve, 500))
    seqLine = `sequential: ${sequential} short connections in ${((Date.now() - s0) / 1000).toFixed(1)}s, errors ${seqErr}, fds ${before} -> ${fds()}, CLOSE_WAIT ${closeWait(ports)}`
  }

  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  console.log(`svcproxy soak: ${values.duration}, seed ${SEED}, churn every ${churnMs} ms, ${values['tcp-workers']} TCP + ${values['udp-workers']} UDP workers (whole-process figures)`)
  for (const r of rows) console.log(r.map((v, i) => v.padStart(widths[i] ?? 0)).join('  '))
  const errText = [...errors].map(([k, v]) => `${k}=${v}`).join(' ') || 'none'
  console.log(`summary: tcp ${c.tcpOk} ok / ${c.tcpErr} failed (${errText}); udp ${c.udpOk} answered / ${c.udpLost} lost; ${c.updates} endpoint updates; RSS ${startRss.toFixed(1)} -> ${rssMiB().toFixed(1)} MiB; fds ${startFds} -> ${fds()}; CLOSE_WAIT ${closeWait(ports)}`)
  if (seqLine !== '') console.log(seqLine)
  await proxy.close()
  for (const b of tcp) b.server.close()
  for (const b of udp) b.sock.close()
  process.exitCode = c.tcpErr > 0 ? 1 : 0
}

void main()
