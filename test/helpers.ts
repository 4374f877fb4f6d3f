import { spawn, type ChildProcess } from 'node:child_process'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { once } from 'node:events'
import { request as httpRequest } from 'node:http'
import { Writable } from 'node:stream'
import pino from 'pino'
import { createProxy, type ServiceProxy, type ProxyOptions } from '../lib/index.js'

/** The engine test proxies use unless a test asks: test/node-engine.test.ts sets it to 'node'. */
export function testEngine (): 'uv' | 'node' {
  return process.env.SVCPROXY_TEST_ENGINE === 'node' ? 'node' : 'uv'
}

/** A proxy with ephemeral ports, closed at teardown. */
export function testProxy (t: { teardown: (fn: () => unknown) => void }, opts: ProxyOptions = {}): ServiceProxy {
  const p = createProxy({ ephemeralPorts: true, logger: pino({ level: 'silent' }), engine: testEngine(), ...opts })
  t.teardown(() => p.close())
  return p
}

export async function listen (server: Server, host = '127.0.0.1', port = 0): Promise<number> {
  server.listen(port, host)
  await once(server, 'listening')
  const a = server.address()
  if (a === null || typeof a === 'string') throw new Error('no address')
  return a.port
}

/** A server that speaks first: sends its name and closes (reads nothing). */
export async function nameServer (t: { teardown: (fn: () => unknown) => void }, name: string, host = '127.0.0.1'): Promise<{ port: number, server: Server, accepted: () => number }> {
  let n = 0
  const server = createServer((s) => { n++; s.on('error', () => {}); s.end(name) })
  const port = await listen(server, host)
  t.teardown(() => server.close())
  return { port, server, accepted: () => n }
}

/** Echo server; optional name prefix sent first. */
export async function echoServer (t: { teardown: (fn: () => unknown) => void }, host = '127.0.0.1'): Promise<{ port: number, server: Server }> {
  const server = createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); s.pipe(s) })
  const port = await listen(server, host)
  t.teardown(() => { server.close(); })
  return { port, server }
}

/** Connects and reads everything until the peer closes. Resolves with the text, or the error code. */
export function fetchAll (host: string, port: number, send?: string): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const s: Socket = connect({ host, port })
    s.on('data', (c) => chunks.push(c))
    s.on('connect', () => { if (send !== undefined) s.end(send) })
    s.on('error', (e: NodeJS.ErrnoException) => resolve(`ERR:${e.code ?? e.message}`))
    s.on('close', () => { if (!s.errored) resolve(Buffer.concat(chunks).toString()) })
  })
}

/** Raw K8s objects for a selector-less service with hand-written Endpoints. */
export function svcWithEndpoints (name: string, clusterIP: string, port: number, backends: Array<{ ip: string, port: number }>, extra: Record<string, unknown> = {}): unknown[] {
  return [
    { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default', annotations: (extra.annotations as Record<string, string>) ?? {} }, spec: { clusterIP, ports: [{ port, protocol: extra.protocol ?? 'TCP' }], ...(extra.spec as object ?? {}) } },
    {
      apiVersion: 'v1',
      kind: 'Endpoints',
      metadata: { name, namespace: 'default' },
      // One subset per backend: test backends listen on different ephemeral ports.
      subsets: backends.map((b) => ({ addresses: [{ ip: b.ip }], ports: [{ port: b.port, protocol: extra.protocol ?? 'TCP' }] })),
    },
  ]
}

/**
 * A TCP endpoint that never answers a SYN: a listening socket whose accept queue is full
 * (backlog 0, nothing accepts). Linux drops further SYNs, so a dial to it hangs. python3
 * holds the socket because Node always accepts.
 */
export async function blackhole (t: { teardown: (fn: () => unknown) => void }): Promise<number> {
  // The port is printed only once the accept queue is full, so no test dial can slip in first.
  const py = 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nfill=[]\nfor i in range(4):\n  c=socket.socket(); c.setblocking(False)\n  try: c.connect(("127.0.0.1",s.getsockname()[1]))\n  except BlockingIOError: pass\n  fill.append(c)\ntime.sleep(0.3)\nprint(s.getsockname()[1],flush=True)\nsys.stdin.read()\n'
  const child: ChildProcess = spawn('python3', ['-c', py], { stdio: ['pipe', 'pipe', 'inherit'] })
  t.teardown(() => child.kill('SIGKILL'))
  const [line] = await once(child.stdout!, 'data') as [Buffer]
  return Number(line.toString().trim())
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * How long a fact is awaited at least. A test waits on a fact (a pair released, a file applied),
 * not on the machine being idle: on a loaded machine the fact comes later, not never, so the
 * bound is only there to turn a real failure into a message before tap's own per-file timeout.
 */
export const FACT_WAIT_MS = 60_000

/** Polls until fn returns true; gives up after max(timeoutMs, FACT_WAIT_MS). */
export async function until (fn: () => boolean | Promise<boolean>, timeoutMs = FACT_WAIT_MS): Promise<boolean> {
  const end = Date.now() + Math.max(timeoutMs, FACT_WAIT_MS)
  while (Date.now() < end) {
    if (await fn()) return true
    await sleep(10)
  }
  return false
}

// UDP helpers (issue 4). The import sits here, with the helpers that use it; ESM hoists it.
import { createSocket as createUdpSocket, type Socket as UdpSocket } from 'node:dgram'

export interface UdpReply { data: Buffer, address: string, port: number }

/** UDP endpoint: answers every datagram with `name:` + the datagram (an empty name echoes it unchanged). */
export async function udpServer (t: { teardown: (fn: () => unknown) => void }, name = '', host = '127.0.0.1'): Promise<{ port: number, sock: UdpSocket, received: () => number, peers: () => Set<string> }> {
  const sock = createUdpSocket('udp4')
  let n = 0
  const peers = new Set<string>()
  const prefix = Buffer.from(name === '' ? '' : `${name}:`)
  sock.on('error', () => {})
  sock.on('message', (m, r) => {
    n++
    peers.add(`${r.address}:${r.port}`)
    sock.send(prefix.length === 0 ? m : Buffer.concat([prefix, m]), r.port, r.address)
  })
  sock.bind(0, host)
  await once(sock, 'listening')
  t.teardown(() => { try { sock.close() } catch {} })
  return { port: sock.address().port, sock, received: () => n, peers: () => peers }
}

/** A UDP client on loopback that keeps every reply, in order. */
export class UdpClient {
  readonly sock: UdpSocket
  private readonly inbox: UdpReply[] = []
  private wake: (() => void) | null = null

  constructor (sock: UdpSocket) {
    this.sock = sock
    sock.on('error', () => {})
    sock.on('message', (data, r) => {
      this.inbox.push({ data, address: r.address, port: r.port })
      this.wake?.()
    })
  }

  get port (): number {
    return this.sock.address().port
  }

  send (data: string | Buffer, port: number, host: string): void {
    this.sock.send(data, port, host)
  }

  /** The next reply, or null if none comes within waitMs (a bound on waiting, not an assertion on time). */
  async recv (waitMs = 2000): Promise<UdpReply | null> {
    const end = Date.now() + waitMs
    while (this.inbox.length === 0) {
      const left = end - Date.now()
      if (left <= 0) return null
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.wake = () => { clearTimeout(timer); resolve() }
      })
      this.wake = null
    }
    return this.inbox.shift() ?? null
  }

  /** Sends and waits for a reply, resending up to `tries` times (as a DNS resolver does). */
  async request (data: string | Buffer, port: number, host: string, tries = 1, waitMs = 2000): Promise<UdpReply | null> {
    for (let i = 0; i < tries; i++) {
      this.send(data, port, host)
      const r = await this.recv(waitMs)
      if (r !== null) return r
    }
    return null
  }

  /** Replies received and not yet taken. */
  queued (): number {
    return this.inbox.length
  }
}

export async function udpClient (t: { teardown: (fn: () => unknown) => void }, host = '127.0.0.1'): Promise<UdpClient> {
  const sock = createUdpSocket('udp4')
  sock.bind(0, host)
  await once(sock, 'listening')
  t.teardown(() => { try { sock.close() } catch {} })
  return new UdpClient(sock)
}

/** A UDP port on `host` with nothing bound to it: a datagram sent there draws ICMP port-unreachable. */
export async function udpClosedPort (host = '127.0.0.1'): Promise<number> {
  const sock = createUdpSocket('udp4')
  sock.bind(0, host)
  await once(sock, 'listening')
  const port = sock.address().port
  await new Promise<void>((resolve) => sock.close(() => resolve()))
  return port
}

/**
 * Command line to run the CLI as a user would: the compiled dist/ (npm test builds it first),
 * which starts in a fraction of the time a TypeScript loader needs per child process.
 */
export function cliCommand (...args: string[]): [string, string[]] {
  const root = new URL('..', import.meta.url).pathname
  return [process.execPath, [`${root}dist/bin/svcproxy.js`, ...args]]
}

/** Runs the CLI to completion; `env` is merged over the test's own environment. */
export async function runCli (args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const [cmd, argv] = cliCommand(...args)
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const [code] = await once(child, 'exit') as [number | null]
  return { code, stdout, stderr }
}

/** mulberry32: a tiny seeded PRNG, uniform in [0, 1): the same sequence for the same seed. */
export function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** An HTTP GET with no keep-alive: status and body. */
export function httpGet (url: string): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    httpRequest(url, { agent: false }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    }).on('error', reject).end()
  })
}

/** A free port on `host`, found by binding 0 and letting go. */
export async function freePort (host: string): Promise<number> {
  const s = createServer()
  const port = await listen(s, host)
  s.close()
  await once(s, 'close')
  return port
}

/** A pino logger whose lines (parsed) the test reads. */
export function captureLogger (level: pino.Level = 'info'): { logger: pino.Logger, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write (chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>)
      cb()
    },
  })
  return { logger: pino({ level }, stream), lines }
}

export interface SliceEp { ip: string, nodeName?: string, ready?: boolean, serving?: boolean, terminating?: boolean }

/** A one-endpoint EndpointSlice of `service` (tests give each endpoint its own slice to set its conditions apart). */
export function endpointSlice (service: string, name: string, ep: SliceEp, port: number, portName = ''): Record<string, unknown> {
  const conditions: Record<string, unknown> = {}
  if (ep.ready !== undefined) conditions.ready = ep.ready
  if (ep.serving !== undefined) conditions.serving = ep.serving
  if (ep.terminating !== undefined) conditions.terminating = ep.terminating
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [ep.ip], conditions, nodeName: ep.nodeName ?? 'node-a' }],
    ports: [{ name: portName, port, protocol: 'TCP' }],
  }
}
