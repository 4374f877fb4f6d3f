import { spawn, type ChildProcess } from 'node:child_process'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { once } from 'node:events'
import pino from 'pino'
import { createProxy, type Proxy, type ProxyOptions } from '../lib/index.js'

/** A proxy with ephemeral ports, closed at teardown. */
export function testProxy (t: { teardown: (fn: () => unknown) => void }, opts: ProxyOptions = {}): Proxy {
  const p = createProxy({ ephemeralPorts: true, logger: pino({ level: 'silent' }), ...opts })
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
  const py = 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\nfill=[]\nfor i in range(4):\n  c=socket.socket(); c.setblocking(False)\n  try: c.connect(("127.0.0.1",s.getsockname()[1]))\n  except BlockingIOError: pass\n  fill.append(c)\nsys.stdin.read()\n'
  const child: ChildProcess = spawn('python3', ['-c', py], { stdio: ['pipe', 'pipe', 'inherit'] })
  t.teardown(() => child.kill('SIGKILL'))
  const [line] = await once(child.stdout!, 'data') as [Buffer]
  return Number(line.toString().trim())
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls until fn returns true (bounded). */
export async function until (fn: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<boolean> {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (await fn()) return true
    await sleep(10)
  }
  return false
}
