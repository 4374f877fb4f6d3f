// Shared by the fault suite (issue #8): descriptor counts, CLOSE_WAIT detection, a spawned
// daemon, and held connections. Everything on loopback, everything bounded in time.

import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync, readFileSync, writeFileSync, mkdtempSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cliCommand, sleep, until } from '../helpers.js'

type Teardown = { teardown: (fn: () => unknown) => void }

/** Open descriptors of a process (this one by default). */
export function fdCount (pid: number | 'self' = 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length
}

/**
 * TCP sockets in CLOSE_WAIT (state 08) whose local or remote port is one of `ports`, from
 * /proc/net/tcp and tcp6: the leak kubernetes#18354 and #14641 were about.
 */
export function closeWaitCount (ports: number[]): number {
  const want = new Set(ports)
  let n = 0
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = ''
    try { text = readFileSync(f, 'utf8') } catch { continue }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/)
      if (cols.length < 4 || cols[3] !== '08') continue
      const lp = parseInt((cols[1] ?? '').split(':')[1] ?? '', 16)
      const rp = parseInt((cols[2] ?? '').split(':')[1] ?? '', 16)
      if (want.has(lp) || want.has(rp)) n++
    }
  }
  return n
}

/** Connects; resolves with the socket once connected, or null on error (bounded). */
export function connectHeld (host: string, port: number, timeoutMs = 5000): Promise<Socket | null> {
  return new Promise((resolve) => {
    const s = connect({ host, port })
    const timer = setTimeout(() => { s.destroy(); resolve(null) }, timeoutMs)
    s.once('connect', () => { clearTimeout(timer); resolve(s) })
    s.once('error', () => { clearTimeout(timer); resolve(null) })
  })
}

/** One request through an echo path: sends `msg`, resolves with what came back before close, or `ERR:code`. */
export function echoOnce (host: string, port: number, msg: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const s = connect({ host, port }, () => { s.end(msg) })
    const timer = setTimeout(() => { s.destroy(); resolve('ERR:TIMEOUT') }, timeoutMs)
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
  // prlimit execs node in the same process, so the pid is the daemon's.
  const ready = await until(() => out.includes('svcproxy: serving') || child.exitCode !== null, 15000)
  if (!ready || child.exitCode !== null) throw new Error(`daemon did not start:\n${out}`)
  return { child, pid: child.pid ?? 0, output: () => out, exited }
}

/** Polls a connect until it is answered as expected (bounded). */
export async function waitServing (host: string, port: number, expect: string, timeoutMs = 10000): Promise<boolean> {
  return await until(async () => (await echoOnce(host, port, 'ping', 2000)) === expect, timeoutMs)
}

export { sleep, until }
