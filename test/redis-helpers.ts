// A private redis-server per test (never the shared 6379), and a TCP cut-switch to disconnect
// one client from it without touching the others.

import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Server, type Socket, connect, createServer } from 'node:net'
import { Redis } from 'ioredis'

type Teardown = { teardown: (fn: () => unknown) => void }

export interface TestRedis {
  port: number
  url: string
  readonly running: boolean
  /** SIGKILL: no persistence is configured, so a restart comes back empty. */
  stop: () => Promise<void>
  /** Starts again on the same port (empty). */
  start: () => Promise<void>
  /** A plain client for the test's own checks, closed at teardown. */
  client: () => Promise<Redis>
}

export async function freePort (): Promise<number> {
  const s = createServer()
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  const a = s.address()
  const port = a !== null && typeof a === 'object' ? a.port : 0
  await new Promise((resolve) => s.close(resolve))
  return port
}

export async function startRedis (t: Teardown, extraArgs: string[] = []): Promise<TestRedis> {
  const port = await freePort()
  // Its own directory: a replica's full sync writes dump.rdb there, and a server started where
  // a dump.rdb lies loads it (--save '' only stops saving), which would leak data across tests.
  const dir = mkdtempSync(join(tmpdir(), 'svcproxy-redis-'))
  let proc: ChildProcess | null = null
  const clients: Redis[] = []
  const start = async (): Promise<void> => {
    const p = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', ...extraArgs], { stdio: ['ignore', 'pipe', 'inherit'] })
    proc = p
    let out = ''
    await new Promise<void>((resolve, reject) => {
      const onData = (c: Buffer): void => {
        out += c.toString()
        if (out.includes('Ready to accept connections')) { p.stdout?.off('data', onData); p.stdout?.resume(); resolve() }
      }
      p.stdout?.on('data', onData)
      p.once('exit', (code) => reject(new Error(`redis-server exited (${code}) before it was ready:\n${out}`)))
      p.once('error', reject)
    })
  }
  const stop = async (): Promise<void> => {
    const p = proc
    proc = null
    if (p === null || p.exitCode !== null) return
    const exited = once(p, 'exit')
    p.kill('SIGKILL')
    await exited
  }
  await start()
  t.teardown(async () => {
    for (const c of clients) c.disconnect()
    await stop()
    rmSync(dir, { recursive: true, force: true })
  })
  const pass = extraArgs.indexOf('--requirepass')
  const auth = pass >= 0 ? `:${extraArgs[pass + 1] ?? ''}@` : ''
  return {
    port,
    url: `redis://${auth}127.0.0.1:${port}`,
    get running () { return proc !== null },
    stop,
    start,
    client: async () => {
      const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1, ...(pass >= 0 ? { password: extraArgs[pass + 1] } : {}) })
      c.on('error', () => {})
      clients.push(c)
      await c.connect()
      return c
    },
  }
}

export interface CutSwitch {
  port: number
  url: string
  /** Drops every open connection and refuses new ones until restore(). */
  cut: () => void
  restore: () => void
}

/** A TCP forwarder in front of Redis: the one client behind it can be disconnected at will. */
export async function cutSwitch (t: Teardown, targetPort: number): Promise<CutSwitch> {
  let isCut = false
  const open = new Set<Socket>()
  const server: Server = createServer((client) => {
    if (isCut) { client.destroy(); return }
    const upstream = connect({ host: '127.0.0.1', port: targetPort })
    open.add(client)
    open.add(upstream)
    const done = (): void => { client.destroy(); upstream.destroy(); open.delete(client); open.delete(upstream) }
    client.on('error', done).on('close', done)
    upstream.on('error', done).on('close', done)
    client.pipe(upstream)
    upstream.pipe(client)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const a = server.address()
  const port = a !== null && typeof a === 'object' ? a.port : 0
  t.teardown(() => { for (const s of open) s.destroy(); server.close() })
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    cut: () => { isCut = true; for (const s of open) s.destroy(); open.clear() },
    restore: () => { isCut = false },
  }
}
