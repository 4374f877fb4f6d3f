// What runs inside the pods: a pod server answering its name, and a client agent that makes
// connections on the test's behalf (the test process is in the root namespace and has no route
// into the cluster). Both are plain CommonJS given to `node -e`: they start in ~40 ms, with no
// TypeScript loader, and need nothing from this repository.

import { createInterface } from 'node:readline'
import type { Cluster, NsProcess } from './netns.js'

/**
 * `node -e POD_SERVER NAME TCP_PORT UDP_PORT`: TCP answers NAME and closes; UDP answers every
 * datagram with NAME. Prints "ready" once both listen, and "conn N" per accepted connection (the
 * pod's own count of the connections it got, independent of what the client saw).
 */
export const POD_SERVER = `
const net = require('node:net')
const dgram = require('node:dgram')
const name = process.argv[1]
let conns = 0
let up = 0
const ready = () => { if (++up === 2) process.stdout.write('ready\\n') }
const tcp = net.createServer((s) => {
  conns++
  process.stdout.write('conn ' + conns + '\\n')
  s.on('error', () => {})
  s.end(name + '\\n')
})
tcp.listen(Number(process.argv[2]), '0.0.0.0', ready)
const udp = dgram.createSocket('udp4')
udp.on('message', (m, r) => { udp.send(name, r.port, r.address) })
udp.bind(Number(process.argv[3]), '0.0.0.0', ready)
`

/**
 * `node -e AGENT`: reads one JSON request per line on stdin, answers one JSON line per request
 * on stdout (same id), requests run concurrently.
 *   tcp   {host, port, timeoutMs}  -> {ok, data} what the server sent before closing, or {ok: false, code}
 *   udp   {host, port, timeoutMs}  -> {ok, data, from: "ip:port"} from a fresh socket (a new session each time)
 *   until {host, port, expect, timeoutMs} -> {ok, at, tries}: connects again and again until the answer
 *         is \`expect\`; \`at\` is the wall clock (ms, sub-ms precise) of that answer.
 */
export const AGENT = `
const net = require('node:net')
const dgram = require('node:dgram')
const readline = require('node:readline')
const now = () => performance.timeOrigin + performance.now()
function tcp (r) {
  return new Promise((resolve) => {
    const chunks = []
    let done = false
    const s = net.connect({ host: r.host, port: r.port })
    const finish = (x) => { if (!done) { done = true; clearTimeout(timer); s.destroy(); resolve(x) } }
    const timer = setTimeout(() => finish({ ok: false, code: 'TIMEOUT' }), r.timeoutMs || 3000)
    s.on('data', (c) => chunks.push(c))
    s.on('error', (e) => finish({ ok: false, code: e.code || e.message, data: Buffer.concat(chunks).toString().trim() }))
    s.on('end', () => finish({ ok: true, data: Buffer.concat(chunks).toString().trim() }))
  })
}
function udp (r) {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4')
    let done = false
    const finish = (x) => { if (!done) { done = true; clearTimeout(timer); s.close(); resolve(x) } }
    const timer = setTimeout(() => finish({ ok: false, code: 'TIMEOUT' }), r.timeoutMs || 3000)
    s.on('message', (m, from) => finish({ ok: true, data: m.toString(), from: from.address + ':' + from.port }))
    s.on('error', (e) => finish({ ok: false, code: e.code || e.message }))
    s.send(r.payload || 'ping', r.port, r.host)
  })
}
async function until (r) {
  const end = Date.now() + (r.timeoutMs || 10000)
  let tries = 0
  for (;;) {
    tries++
    const x = await tcp({ host: r.host, port: r.port, timeoutMs: 1000 })
    if (x.data === r.expect) return { ok: true, at: now(), tries }
    if (Date.now() > end) return { ok: false, code: 'TIMEOUT', tries, last: x }
  }
}
const ops = { tcp, udp, until }
const rl = readline.createInterface({ input: process.stdin })
rl.on('line', async (line) => {
  const r = JSON.parse(line)
  const res = await ops[r.op](r)
  process.stdout.write(JSON.stringify(Object.assign({ id: r.id }, res)) + '\\n')
})
rl.on('close', () => process.exit(0))
process.stdout.write('{"ready":true}\\n')
`

export interface Answer {
  ok: boolean
  /** What the server sent (a pod name), trimmed. */
  data?: string
  /** The error code (ECONNRESET, ECONNREFUSED, TIMEOUT, …) when ok is false. */
  code?: string
  /** udp: the source of the reply. */
  from?: string
  /** until: wall-clock ms of the awaited answer, and how many connections it took. */
  at?: number
  tries?: number
}

/** Starts a pod server in the pod's namespace and waits until it listens. */
export async function startPodServer (c: Cluster, pod: string, tcpPort = 8080, udpPort = 5353): Promise<NsProcess> {
  const p = c.start(c.pod(pod), [process.execPath, '-e', POD_SERVER, pod, String(tcpPort), String(udpPort)])
  await p.waitOutput(/^ready$/m)
  return p
}

/** How many connections a pod server has accepted so far (its own "conn N" lines). */
export function acceptedBy (p: NsProcess): number {
  return (p.stdout().match(/^conn \d+$/gm) ?? []).length
}

/** The client side, driven over the agent's stdio. */
export class Agent {
  private next = 1
  private readonly pending = new Map<number, (a: Answer) => void>()

  private constructor (readonly proc: NsProcess) {
    createInterface({ input: proc.child.stdout ?? process.stdin }).on('line', (line) => {
      const a = JSON.parse(line) as Answer & { id?: number }
      const done = a.id === undefined ? undefined : this.pending.get(a.id)
      if (done === undefined || a.id === undefined) return
      this.pending.delete(a.id)
      done(a)
    })
    void proc.exited.then(() => {
      for (const done of this.pending.values()) done({ ok: false, code: 'AGENT_EXITED' })
      this.pending.clear()
    })
  }

  /** An agent inside namespace `ns` (a pod, or a node). */
  static async start (c: Cluster, ns: string): Promise<Agent> {
    const p = c.start(ns, [process.execPath, '-e', AGENT])
    await p.waitOutput(/"ready":true/)
    return new Agent(p)
  }

  private ask (req: Record<string, unknown>): Promise<Answer> {
    const id = this.next++
    return new Promise((resolve) => {
      this.pending.set(id, resolve)
      this.proc.child.stdin?.write(JSON.stringify({ id, ...req }) + '\n')
    })
  }

  tcp (host: string, port: number, timeoutMs = 3000): Promise<Answer> { return this.ask({ op: 'tcp', host, port, timeoutMs }) }
  udp (host: string, port: number, timeoutMs = 3000): Promise<Answer> { return this.ask({ op: 'udp', host, port, timeoutMs }) }
  /** Connects again and again until the answer is `expect`. */
  until (host: string, port: number, expect: string, timeoutMs = 10000): Promise<Answer> { return this.ask({ op: 'until', host, port, expect, timeoutMs }) }

  /** `n` connections one after the other; the answers (pod names, or ERR:code) in order. */
  async tcpSeries (host: string, port: number, n: number): Promise<string[]> {
    const out: string[] = []
    for (let i = 0; i < n; i++) {
      const a = await this.tcp(host, port)
      out.push(a.ok ? a.data ?? '' : `ERR:${a.code ?? '?'}`)
    }
    return out
  }

  /** `n` UDP exchanges, each from a new source port; the answers with their source. */
  async udpSeries (host: string, port: number, n: number): Promise<Answer[]> {
    const out: Answer[] = []
    for (let i = 0; i < n; i++) out.push(await this.udp(host, port))
    return out
  }
}
