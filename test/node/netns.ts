// A small cluster in network namespaces (issue 15): two "node" namespaces joined by a veth pair,
// pods as namespaces on a bridge of their node, routes between the nodes' pod CIDRs. Everything
// the cluster sends stays inside namespaces this run created; the test process (in the root
// namespace) only drives them: `ip -n`, `ip netns exec`, and the stdio of what runs inside.
//
//        client pod        pod web-1a   pod web-1b             pod web-2a   pod web-2b
//       10.244.1.100       10.244.1.10  10.244.1.11            10.244.2.10  10.244.2.11
//            │ eth0             │            │                      │            │
//  ┌─────────┴─────────────────┴────────────┴──────┐   ┌───────────┴────────────┴──────────┐
//  │ node1   cbr0 10.244.1.1/24                    │   │ node2   cbr0 10.244.2.1/24         │
//  │         svc0 (VIPs, added by svcproxy)        │   │         svc0 (VIPs, added by svcproxy)
//  │         redis-server 192.168.77.1:6379        │   │                                    │
//  │         svcproxy run --vip-interface svc0     │   │         svcproxy run ...           │
//  │ eth0 192.168.77.1/24 ─────────────────────────┼───┼─ eth0 192.168.77.2/24              │
//  │ route 10.244.2.0/24 via 192.168.77.2          │   │ route 10.244.1.0/24 via 192.168.77.1
//  └───────────────────────────────────────────────┘   └────────────────────────────────────┘
//
// No tap here: the bench (bench/node-vips.ts) builds the same cluster.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The checkout: the nearest folder up with a package.json (this file also runs compiled, from dist/test/node/ for the bench). */
export const ROOT = findRoot(dirname(fileURLToPath(import.meta.url)))

function findRoot (from: string): string {
  for (let d = from; d !== dirname(d); d = dirname(d)) if (existsSync(join(d, 'package.json'))) return d
  throw new Error(`no package.json above ${from}`)
}
/** Every namespace a run creates starts with this, then the run's pid: `svcp-1234-node1`. */
export const NS_PREFIX = 'svcp-'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `fn` until it holds, or false after `timeoutMs`. */
export async function until (fn: () => boolean | Promise<boolean>, timeoutMs = 10000, everyMs = 20): Promise<boolean> {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (await fn()) return true
    if (Date.now() > end) return false
    await sleep(everyMs)
  }
}

/** The environment for processes inside the cluster: tap's loader and coverage hooks left out (they only slow a child). */
export function plainEnv (): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^TAP|^NODE_OPTIONS$|^NODE_V8_COVERAGE$/.test(k)))
}

/** `ip -json addr` of 10,000 addresses is ~1.5 MB, past spawnSync's 1 MiB default. */
const MAX_OUTPUT = 256 * 1024 * 1024

/** Runs `ip ARGS` and returns stdout; throws with ip's message when it fails. */
export function ip (...args: string[]): string {
  const r = spawnSync('ip', args, { encoding: 'utf8', maxBuffer: MAX_OUTPUT })
  if (r.error !== undefined) throw new Error(`ip ${args.join(' ')}: ${r.error.message}`)
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`)
  return r.stdout
}

/** Writes a sysctl inside a namespace through /proc (no procps needed): the value is per namespace. */
export function sysctlIn (ns: string, key: string, value: string): void {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'tee', `/proc/sys/${key.replaceAll('.', '/')}`], { input: value, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`sysctl ${key}=${value} in ${ns}: ${r.stderr.trim() || r.error?.message}`)
}

/**
 * What this machine lacks for the namespace suite, each named so a failure says what to
 * install or change. Empty when everything is there.
 */
export function missingPrerequisites (): string[] {
  const missing: string[] = []
  if (process.getuid?.() !== 0) missing.push(`root: network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN (running as uid ${process.getuid?.() ?? '?'})`)
  const v = spawnSync('ip', ['-V'], { encoding: 'utf8' })
  if (v.error !== undefined || v.status !== 0) missing.push('iproute2: the `ip` command (apt-get install iproute2; .ci/run installs it)')
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  if (r.error !== undefined) missing.push('redis-server on the PATH')
  if (!existsSync(join(ROOT, 'dist', 'bin', 'svcproxy.js'))) missing.push('dist/ (run npx tsc -p tsconfig.build.json)')
  if (missing.length === 0) {
    const probe = `${NS_PREFIX}${process.pid}-probe`
    const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' })
    if (add.status !== 0) missing.push(`network namespaces: ip netns add says ${add.stderr.trim()}`)
    else {
      const veth = spawnSync('ip', ['-n', probe, 'link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1'], { encoding: 'utf8' })
      if (veth.status !== 0) missing.push(`veth links: ${veth.stderr.trim()}`)
      spawnSync('ip', ['netns', 'del', probe])
    }
  }
  return missing
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The pids of the processes in a namespace (those an earlier, crashed run left there). */
function pidsIn (ns: string): number[] {
  const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' })
  return r.stdout.split('\n').filter((l) => /^\d+$/.test(l.trim())).map(Number)
}

/** Kills what runs in the namespace, then deletes it (a namespace with processes in it outlives its name). */
export function deleteNamespace (ns: string): void {
  for (const pid of pidsIn(ns)) {
    try { process.kill(pid, 'SIGKILL') } catch {}
  }
  spawnSync('ip', ['netns', 'del', ns])
}

/**
 * Namespaces of earlier runs that crashed before their teardown: `svcp-PID-…` whose PID is no
 * longer alive. A live run's namespaces (another suite running now) are left alone.
 */
export function sweepStaleNamespaces (): string[] {
  const swept: string[] = []
  for (const line of ip('netns', 'list').split('\n')) {
    const name = line.split(' ')[0] ?? ''
    const m = /^svcp-(\d+)-/.exec(name)
    if (m === null || alive(Number(m[1]))) continue
    deleteNamespace(name)
    swept.push(name)
  }
  return swept
}

/** The addresses on a link inside a namespace, from `ip -json addr show dev LINK`; null when there is no such link. */
export function linkAddresses (ns: string, link: string): string[] | null {
  const r = spawnSync('ip', ['-n', ns, '-json', 'addr', 'show', 'dev', link], { encoding: 'utf8', maxBuffer: MAX_OUTPUT })
  if (r.error !== undefined) throw new Error(`ip -n ${ns} addr show dev ${link}: ${r.error.message}`)
  if (r.status !== 0) return null
  const links = JSON.parse(r.stdout === '' ? '[]' : r.stdout) as Array<{ addr_info?: Array<{ local?: string, prefixlen?: number }> }>
  return links.flatMap((l) => (l.addr_info ?? []).map((a) => `${a.local ?? '?'}/${a.prefixlen ?? '?'}`))
}

/** Every address in a namespace, by link: to see that a VIP sits on exactly one link, once. */
export function allAddresses (ns: string): Array<{ link: string, address: string }> {
  const links = JSON.parse(ip('-n', ns, '-json', 'addr', 'show')) as Array<{ ifname: string, addr_info?: Array<{ local?: string }> }>
  return links.flatMap((l) => (l.addr_info ?? []).map((a) => ({ link: l.ifname, address: a.local ?? '?' })))
}

// ---------------------------------------------------------------------------------------------
// Processes inside namespaces

export interface NsProcess {
  readonly ns: string
  readonly child: ChildProcess
  /** `ip netns exec` execs the command in place: this is the pid of the program itself. */
  readonly pid: number
  stdout: () => string
  stderr: () => string
  /** Resolves with the exit code (null when a signal ended it). */
  exited: Promise<number | null>
  running: () => boolean
  /** Resolves once `pattern` appears in stdout or stderr; rejects when the process exits first or after `timeoutMs`. */
  waitOutput: (pattern: RegExp, timeoutMs?: number) => Promise<void>
  /** Sends the signal and waits for the exit. */
  kill: (signal?: NodeJS.Signals) => Promise<void>
}

/** Starts `argv` inside namespace `ns`, stdio piped. The caller ends it (kill), or the cluster does at destroy. */
export function startIn (ns: string, argv: string[], env: NodeJS.ProcessEnv = plainEnv()): NsProcess {
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  const waiters = new Set<() => void>()
  const poke = (): void => { for (const w of [...waiters]) w() }
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { out += d; poke() })
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { err += d; poke() })
  child.stdin?.on('error', () => {})
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => { resolve(code); poke() })
    child.once('error', () => { resolve(127); poke() })
  })
  const running = (): boolean => child.exitCode === null && child.signalCode === null
  const proc: NsProcess = {
    ns,
    child,
    pid: child.pid ?? 0,
    stdout: () => out,
    stderr: () => err,
    exited,
    running,
    waitOutput: (pattern, timeoutMs = 20000) => new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { waiters.delete(check); reject(new Error(`${argv.join(' ')} in ${ns}: no ${String(pattern)} within ${timeoutMs} ms\n${out}${err}`)) }, timeoutMs)
      const check = (): void => {
        if (pattern.test(out) || pattern.test(err)) { clearTimeout(timer); waiters.delete(check); resolve() } else if (!running()) {
          clearTimeout(timer)
          waiters.delete(check)
          reject(new Error(`${argv.join(' ')} in ${ns} exited (${child.exitCode ?? child.signalCode ?? '?'}) before ${String(pattern)}:\n${out}${err}`))
        }
      }
      waiters.add(check)
      check()
    }),
    kill: async (signal = 'SIGKILL') => {
      if (!running()) return
      child.kill(signal)
      await exited
    },
  }
  return proc
}

// ---------------------------------------------------------------------------------------------
// The cluster

export interface PodSpec { name: string, node: 1 | 2, ip: string }

export interface ClusterOptions {
  /** Namespace prefix, default `svcp-<pid>-`; the bench and the test use their own. */
  prefix?: string
  pods: PodSpec[]
}

export const NODE_ADDRESS = { 1: '192.168.77.1', 2: '192.168.77.2' } as const
export const POD_CIDR = { 1: '10.244.1.0/24', 2: '10.244.2.0/24' } as const
const GATEWAY = { 1: '10.244.1.1', 2: '10.244.2.1' } as const

export class Cluster {
  readonly prefix: string
  readonly pods: PodSpec[]
  /** Scratch directory: state files, the Redis socket, manifests. Removed at destroy. */
  readonly dir: string
  private readonly namespaces: string[] = []
  private readonly procs: NsProcess[] = []

  constructor (opts: ClusterOptions) {
    this.prefix = opts.prefix ?? `${NS_PREFIX}${process.pid}-`
    this.pods = opts.pods
    this.dir = mkdtempSync(join(tmpdir(), 'svcproxy-netns-'))
  }

  node (n: 1 | 2): string { return `${this.prefix}node${n}` }
  pod (name: string): string { return `${this.prefix}${name}` }

  /** Creates the namespaces, links, addresses and routes. Throws (naming the `ip` command) on the first failure. */
  build (): void {
    for (const n of [1, 2] as const) {
      const ns = this.addNamespace(this.node(n))
      ip('-n', ns, 'link', 'add', 'cbr0', 'type', 'bridge')
      ip('-n', ns, 'addr', 'add', `${GATEWAY[n]}/24`, 'dev', 'cbr0')
      ip('-n', ns, 'link', 'set', 'cbr0', 'up')
      sysctlIn(ns, 'net.ipv4.ip_forward', '1')
    }
    // The wire between the nodes: created inside node1 with its far end placed in node2.
    ip('-n', this.node(1), 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.node(2))
    for (const n of [1, 2] as const) {
      const ns = this.node(n)
      ip('-n', ns, 'addr', 'add', `${NODE_ADDRESS[n]}/24`, 'dev', 'eth0')
      ip('-n', ns, 'link', 'set', 'eth0', 'up')
      const other = n === 1 ? 2 : 1
      ip('-n', ns, 'route', 'add', POD_CIDR[other], 'via', NODE_ADDRESS[other])
    }
    for (const p of this.pods) this.addPod(p)
  }

  private addNamespace (ns: string): string {
    ip('netns', 'add', ns)
    this.namespaces.push(ns)
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    return ns
  }

  private addPod (p: PodSpec): void {
    const ns = this.addNamespace(this.pod(p.name))
    const node = this.node(p.node)
    const hostSide = `v-${p.name}`.slice(0, 15)
    ip('-n', node, 'link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns)
    ip('-n', node, 'link', 'set', hostSide, 'master', 'cbr0', 'up')
    ip('-n', ns, 'addr', 'add', `${p.ip}/24`, 'dev', 'eth0')
    ip('-n', ns, 'link', 'set', 'eth0', 'up')
    ip('-n', ns, 'route', 'add', 'default', 'via', GATEWAY[p.node])
  }

  /** Starts a process inside a namespace of this cluster; killed at destroy. */
  start (ns: string, argv: string[], env?: NodeJS.ProcessEnv): NsProcess {
    const p = startIn(ns, argv, env)
    this.procs.push(p)
    return p
  }

  /** Kills every process started here, then deletes every namespace (their links go with them). Never throws. */
  async destroy (): Promise<void> {
    await Promise.all(this.procs.map(async (p) => { await p.kill('SIGKILL').catch(() => {}) }))
    for (const ns of [...this.namespaces].reverse()) deleteNamespace(ns)
    rmSync(this.dir, { recursive: true, force: true })
  }

  /** The namespaces this cluster still has (an empty list after destroy). */
  remaining (): string[] {
    const listed = new Set(ip('netns', 'list').split('\n').map((l) => l.split(' ')[0] ?? ''))
    return this.namespaces.filter((ns) => listed.has(ns))
  }
}

// ---------------------------------------------------------------------------------------------
// Redis and svcproxy inside the cluster

export const REDIS_PORT = 6379

export interface ClusterRedis {
  proc: NsProcess
  /** What the daemons and `svcproxy apply` (run inside node1) use. */
  url: string
  /** A unix socket for the test process itself: it has no route into the namespaces. */
  socket: string
}

/** redis-server inside node1, bound to node1's address (and a socket file for the test's own reads). */
export async function startRedisIn (c: Cluster): Promise<ClusterRedis> {
  const socket = join(c.dir, 'redis.sock')
  const proc = c.start(c.node(1), ['redis-server', '--port', String(REDIS_PORT), '--bind', NODE_ADDRESS[1], '--protected-mode', 'no',
    '--unixsocket', socket, '--unixsocketperm', '700', '--dir', c.dir, '--save', '', '--appendonly', 'no'])
  await proc.waitOutput(/Ready to accept connections/)
  return { proc, url: `redis://${NODE_ADDRESS[1]}:${REDIS_PORT}`, socket }
}

/** The svcproxy CLI as a user runs it: the compiled dist/ through bin/svcproxy. */
export function svcproxyArgv (...args: string[]): string[] {
  return [process.execPath, join(ROOT, 'bin', 'svcproxy'), ...args]
}

export interface DaemonOptions {
  redisUrl: string
  node: 1 | 2
  link?: string
  stateFile: string
  extra?: string[]
}

/**
 * `svcproxy run --redis … --vip-interface svc0 --hostname-override nodeN` inside node N, its
 * NodePorts on the node's own address. Resolves once it says it serves; rejects (with its
 * output) when it exits first.
 */
export async function startDaemon (c: Cluster, o: DaemonOptions): Promise<NsProcess> {
  const argv = svcproxyArgv('run', '--redis', o.redisUrl, '--vip-interface', o.link ?? 'svc0', '--hostname-override', `node${o.node}`,
    '--nodeport-addresses', `${NODE_ADDRESS[o.node]}/32`, '--service-cluster-ip-range', '10.96.0.0/16', '--state-file', o.stateFile,
    '--healthz-bind-address', '127.0.0.1:0', '--metrics-bind-address', '127.0.0.1:10249', ...(o.extra ?? []))
  const d = c.start(c.node(o.node), argv, process.env)
  await d.waitOutput(/svcproxy: serving/, 60000)
  return d
}

/** Runs a CLI command inside a namespace to its end. */
export async function runIn (ns: string, argv: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const p = startIn(ns, argv, process.env)
  p.child.stdin?.end()
  const code = await p.exited
  return { code, stdout: p.stdout(), stderr: p.stderr() }
}
