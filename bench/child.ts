// The IPC protocol between bench/run.ts and the processes it starts (backends and proxies).
// A child announces itself with one `ready` message; the parent then asks for the child's own
// CPU time (`process.cpuUsage()`: user+sys of every thread of that process) around each workload,
// and finally tells it to stop. The child does nothing else on the IPC channel while a workload
// runs, so measuring costs the measured process two messages per workload.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'

export interface Endpoint { ip: string, port: number }

/** What the backends process serves. */
export interface Backends {
  http: Endpoint[]
  bulk: Endpoint[]
  udp: Endpoint[]
}

/** Where a proxy under test serves each kind of traffic; null when it does not (with why). */
export interface ProxyAddresses {
  http: Endpoint | null
  bulk: Endpoint | null
  udp: Endpoint | null
  notes: Record<string, string>
}

export type ParentMessage = { type: 'cpu' } | { type: 'stop' } | { type: 'gc' }
export type ChildMessage =
  | { type: 'ready', data: unknown }
  | { type: 'cpu', user: number, system: number }
  | { type: 'gc' }
  | { type: 'fatal', message: string }

// ---------------------------------------------------------------- child side

/** Child side: answer `cpu` and `stop`; `stop` runs `close` and exits. */
export function serveParent (data: unknown, close: () => Promise<void>): void {
  const send = process.send?.bind(process)
  if (send === undefined) throw new Error('bench child: started without an IPC channel')
  process.on('message', (m: ParentMessage) => {
    if (m.type === 'cpu') {
      const u = process.cpuUsage()
      send({ type: 'cpu', user: u.user, system: u.system } satisfies ChildMessage)
    } else if (m.type === 'gc') {
      // Only when started with --expose-gc (bench/idle.ts): RSS without garbage.
      const gc = (globalThis as { gc?: () => void }).gc
      if (gc !== undefined) gc()
      send({ type: 'gc' } satisfies ChildMessage)
    } else if (m.type === 'stop') {
      void close().finally(() => process.exit(0))
    }
  })
  // The parent died: do not linger.
  process.on('disconnect', () => { void close().finally(() => process.exit(0)) })
  send({ type: 'ready', data } satisfies ChildMessage)
}

/** Child side: report a startup failure to the parent and exit. */
export function failToParent (err: unknown): never {
  const message = err instanceof Error ? err.stack ?? err.message : String(err)
  if (process.send !== undefined) process.send({ type: 'fatal', message } satisfies ChildMessage)
  process.stderr.write(`${message}\n`)
  process.exit(1)
}

/** Reads the JSON config a child was given in BENCH_CONFIG. */
export function childConfig<T> (): T {
  const raw = process.env.BENCH_CONFIG
  if (raw === undefined) throw new Error('BENCH_CONFIG is not set')
  return JSON.parse(raw) as T
}

// ---------------------------------------------------------------- parent side

export interface Child<T> {
  name: string
  pid: number
  data: T
  /**
   * CPU µs used so far by the child process (all its threads); `total`, when given, is the exact
   * run time (user + system as given are then only its split, in 10 ms steps: nginx, HAProxy).
   */
  cpu: () => Promise<{ user: number, system: number, total?: number }>
  stop: () => Promise<void>
  /** A full GC in the child (Node children only; a no-op unless it runs with --expose-gc). */
  gc?: () => Promise<void>
}

/**
 * Starts `bench/<script>` next to this file (the .ts source under the test runner, the
 * compiled .js under `npm run bench`) with this process's execArgv, so a TS loader carries over.
 */
export async function startChild<T> (name: string, script: string, config: unknown, nodeArgs: string[] = [], timeoutMs = 30_000): Promise<Child<T>> {
  const here = fileURLToPath(import.meta.url)
  const file = fileURLToPath(new URL(`./${script}${extname(here)}`, import.meta.url))
  const proc: ChildProcess = spawn(process.execPath, [...process.execArgv, ...nodeArgs, file], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, BENCH_CONFIG: JSON.stringify(config) },
  })
  const exited = once(proc, 'exit')
  const first = await Promise.race([
    once(proc, 'message') as Promise<[ChildMessage]>,
    exited.then(([code]) => { throw new Error(`${name}: exited with ${String(code)} before it was ready`) }),
    new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error(`${name}: not ready after ${timeoutMs} ms`)), timeoutMs).unref()),
  ]).catch((err: unknown) => { proc.kill('SIGKILL'); throw err })
  const msg = first[0]
  if (msg.type === 'fatal') { proc.kill('SIGKILL'); throw new Error(`${name}: ${msg.message}`) }
  if (msg.type !== 'ready') { proc.kill('SIGKILL'); throw new Error(`${name}: unexpected first message ${msg.type}`) }

  let stopped = false
  return {
    name,
    pid: proc.pid ?? 0,
    data: msg.data as T,
    async cpu (): Promise<{ user: number, system: number }> {
      const reply = once(proc, 'message') as Promise<[ChildMessage]>
      proc.send({ type: 'cpu' } satisfies ParentMessage)
      const [m] = await reply
      if (m.type !== 'cpu') throw new Error(`${name}: expected a cpu reply, got ${m.type}`)
      return { user: m.user, system: m.system }
    },
    async gc (): Promise<void> {
      const reply = once(proc, 'message') as Promise<[ChildMessage]>
      proc.send({ type: 'gc' } satisfies ParentMessage)
      await reply
    },
    async stop (): Promise<void> {
      if (stopped) return
      stopped = true
      if (proc.exitCode !== null || proc.signalCode !== null) return
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000)
      if (proc.connected) proc.send({ type: 'stop' } satisfies ParentMessage)
      else proc.kill('SIGTERM')
      await exited
      clearTimeout(t)
    },
  }
}
