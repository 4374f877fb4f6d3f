// Shared by the fault suite (issue #8): descriptor counts, CLOSE_WAIT detection, a spawned
// daemon, and held connections. Everything on loopback. Waits are on facts (a line printed, a
// count reached); a timeout argument of 0 means none, so only tap's per-file timeout bounds it.

import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync, readFileSync, readlinkSync, writeFileSync, mkdtempSync } from 'node:fs'
import { connect, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cliCommand, sleep, until } from '../helpers.js'

type Teardown = { teardown: (fn: () => unknown) => void }

/** Open descriptors of a process (this one by default). */
export function fdCount (pid: number | 'self' = 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length
}

/**
 * A process's TCP sockets, by what they are connected to: `clients` have local port `localPort`
 * (accepted, not the listener), `upstreams` have remote port `remotePort` (dialed). Read from its
 * descriptor table and /proc/net/tcp, so a connection still in the kernel's accept queue, or one
 * the process has already closed, does not count.
 */
export function socketsOf (pid: number, localPort: number, remotePort: number): { clients: number, upstreams: number } {
  const inodes = new Set<string>()
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let link = ''
    try { link = readlinkSync(`/proc/${pid}/fd/${fd}`) } catch { continue } // closed meanwhile
    if (link.startsWith('socket:[')) inodes.add(link.slice(8, -1))
  }
  let clients = 0
  let upstreams = 0
  for (const cols of tcpTable()) {
    if (cols[3] === '0A' || !inodes.has(cols[9] ?? '')) continue // 0A: LISTEN
    if (portOf(cols[1]) === localPort) clients++
    else if (portOf(cols[2]) === remotePort) upstreams++
  }
  return { clients, upstreams }
}

/** Rows of /proc/net/tcp and tcp6, split in columns (1 local, 2 remote, 3 state, 9 inode). */
function tcpTable (): string[][] {
  const rows: string[][] = []
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = ''
    try { text = readFileSync(f, 'utf8') } catch { continue }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/)
      if (cols.length >= 10) rows.push(cols)
    }
  }
  return rows
}

function portOf (hexAddress: string | undefined): number {
  return parseInt((hexAddress ?? '').split(':')[1] ?? '', 16)
}

/** Open connections of a server in this process, counted from 'connection' to the socket's 'close'. */
export function openConnections (server: Server): () => number {
  let n = 0
  server.on('connection', (s: Socket) => { n++; s.once('close', () => { n-- }) })
  return () => n
}

/**
 * Polls `fn` until it holds. No deadline of its own: tap's per-file timeout is the bound, so a
 * busy machine makes the wait longer, never the test wrong.
 */
export async function waitFor (fn: () => boolean | Promise<boolean>, everyMs = 20): Promise<true> {
  while (!(await fn())) await sleep(everyMs)
  return true
}

/**
 * TCP sockets in CLOSE_WAIT (state 08) whose local or remote port is one of `ports`, from
 * /proc/net/tcp and tcp6: the leak kubernetes#18354 and #14641 were about.
 */
export function closeWaitCount (ports: number[]): number {
  const want = new Set(ports)
  let n = 0
  for (const cols of tcpTable()) if (cols[3] === '08' && (want.has(portOf(cols[1])) || want.has(portOf(cols[2])))) n++
  return n
}

/** Connects; resolves with the socket once connected, or null on error or after `timeoutMs` (0: no timeout). */
export function connectHeld (host: string, port: number, timeoutMs = 5000): Promise<Socket | null> {
  return new Promise((resolve) => {
    const s = connect({ host, port })
    const timer = timeoutMs > 0 ? setTimeout(() => { s.destroy(); resolve(null) }, timeoutMs) : undefined
    s.once('connect', () => { clearTimeout(timer); resolve(s) })
    s.once('error', () => { clearTimeout(timer); resolve(null) })
  })
}

/**
 * One request through an echo path: sends `msg`, resolves with what came back before close, or
 * `ERR:code` (`ERR:TIMEOUT` after `timeoutMs`; 0: no timeout).
 */
export function echoOnce (host: string, port: number, msg: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const s = connect({ host, port }, () => { s.end(msg) })
    const timer = timeoutMs > 0 ? setTimeout(() => { s.destroy(); resolve('ERR:TIMEOUT') }, timeoutMs) : undefined
    s.on('data', (c: Buffer) => chunks.push(c))
    s.on('error', (e: NodeJS.ErrnoException) => { clearTimeout(timer); resolve(`ERR:${e.code ?? e.message}`) })
    s.on('close', () => { clearTimeout(timer); if (!s.errored) resolve(Buffer.concat(chunks).toString()) })
  })
}

/** A config file in a fresh temp directory. */
export function writeConfig (objects: unknown[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'svcproxy-fault-'))
  const file = join(dir, 'services.json')
  writeFileSync(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }))
  return file
}

export interface Daemon {
  child: ChildProcess
  pid: number
  /** Everything written to stdout (pino JSON lines) and stderr so far. */
  output: () => string
  exited: Promise<number | null>
}

/**
 * Runs the compiled CLI (`npm run build` first) as `svcproxy run --config FILE`, admin servers
 * off. `prefix` runs it under e.g. `prlimit --nofile=N:N`. Killed at teardown.
 */
export async function startDaemon (t: Teardown, config: string, extra: string[] = [], prefix: string[] = []): Promise<Daemon> {
  const [node, args] = cliCommand('run', '--config', config, '--healthz-bind-address', '', '--metrics-bind-address', '', ...extra)
  const argv = [...prefix, node, ...args]
  const child = spawn(argv[0] ?? node, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr?.on('data', (c: Buffer) => { out += c.toString() })
  const exited = once(child, 'exit').then(([code]) => code as number | null)
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  // prlimit execs node in the same process, so the pid is the daemon's. Waits on the daemon's
  // own word that it serves (or its exit), not a clock: on a loaded machine it only comes later.
  const ended = (): boolean => child.exitCode !== null || child.signalCode !== null
  await waitFor(() => out.includes('svcproxy: serving') || ended())
  if (ended()) throw new Error(`daemon did not start:\n${out}`)
  return { child, pid: child.pid ?? 0, output: () => out, exited }
}

/** Polls a connect until it is answered as expected (bounded). */
export async function waitServing (host: string, port: number, expect: string, timeoutMs = 10000): Promise<boolean> {
  return await until(async () => (await echoOnce(host, port, 'ping', 2000)) === expect, timeoutMs)
}

export { sleep, until }
