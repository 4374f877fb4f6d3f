// nginx (stream module) and HAProxy as bench targets (issue 17): the bench writes their configs to
// a temporary folder and starts them itself when they are installed (Debian: nginx,
// libnginx-mod-stream, haproxy); when they are not, the rows say how to install them.
//
// Configured as fairly as we could: one process with one thread each, as svcproxy has one
// (nginx `master_process off`, HAProxy `nbthread 1`), the same backends, round-robin, no logs,
// their defaults otherwise (nginx `proxy_buffer_size` 16k, HAProxy `tune.bufsize` 16k; neither
// splices by default). nginx closes a TCP session at the first FIN unless `proxy_half_close on`
// (1.21.4+), which the bulk workload needs (the client's FIN comes before the sink's answer): it
// is set on the bulk server only, as a user would; the http servers keep the default.
//
// Their CPU is read from outside, for the whole process: /proc/PID/task/*/schedstat (run time in
// ns, what getrusage() and so process.cpuUsage() add up for a Node process) and /proc/PID/stat
// (utime/stime in clock ticks: the user/kernel split).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { createSocket } from 'node:dgram'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Backends, Child, Endpoint, ProxyAddresses } from './child.js'

export type ExternalName = 'nginx' | 'haproxy'

const STREAM_MODULES = ['/usr/lib/nginx/modules/ngx_stream_module.so', '/usr/share/nginx/modules/ngx_stream_module.so']
const CLK_TCK = 100 // Linux USER_HZ (getconf CLK_TCK)

/** Why `name` cannot run here ('' when it can): not installed, with how to install it. */
export function missing (name: ExternalName): string {
  if (process.platform !== 'linux') return 'not measured: /proc is Linux only'
  if (name === 'nginx') {
    const v = spawnSync('nginx', ['-v'], { encoding: 'utf8' })
    if (v.error !== undefined) return 'not installed: apt-get install -y nginx libnginx-mod-stream'
    if (streamModule() === undefined) return 'no stream module: apt-get install -y libnginx-mod-stream'
    return ''
  }
  const v = spawnSync('haproxy', ['-v'], { encoding: 'utf8' })
  return v.error !== undefined ? 'not installed: apt-get install -y haproxy' : ''
}

function streamModule (): string | undefined {
  return STREAM_MODULES.find((p) => existsSync(p))
}

/** A port free on `ip` for TCP (and UDP when asked) right now. */
export async function freePortOn (ip: string, udp = false): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const s = createServer()
    s.listen(0, ip)
    await once(s, 'listening')
    const port = (s.address() as { port: number }).port
    s.close()
    if (!udp) return port
    const u = createSocket('udp4')
    const ok = await new Promise<boolean>((resolve) => {
      u.once('error', () => resolve(false))
      u.bind(port, ip, () => resolve(true))
    })
    u.close()
    if (ok) return port
  }
  throw new Error(`no free port on ${ip}`)
}

const ADDR: Record<ExternalName, string> = { nginx: '127.0.50', haproxy: '127.0.51' }
const hp = (e: Endpoint): string => `${e.ip}:${e.port}`

function nginxConfig (dir: string, b: Backends, at: ProxyAddresses, maxConnections: number, halfClose: boolean): string {
  const servers = (list: Endpoint[]): string => list.map((e) => `server ${hp(e)};`).join(' ')
  return [
    `load_module ${streamModule() ?? ''};`,
    'daemon off;', 'master_process off;', 'worker_processes 1;',
    `pid ${dir}/nginx.pid;`, `error_log ${dir}/error.log warn;`,
    `worker_rlimit_nofile ${2 * maxConnections + 64};`,
    `events { worker_connections ${2 * maxConnections + 64}; }`,
    'stream {',
    `  upstream http { ${servers(b.http)} }`,
    `  upstream bulk { ${servers(b.bulk)} }`,
    `  upstream udp { ${servers(b.udp)} }`,
    `  server { listen ${hp(at.http as Endpoint)} backlog=4096; proxy_pass http;${halfClose ? ' proxy_half_close on;' : ''} }`,
    `  server { listen ${hp(at.bulk as Endpoint)} backlog=4096; proxy_pass bulk; proxy_half_close on; }`,
    `  server { listen ${hp(at.udp as Endpoint)} udp; proxy_pass udp; }`,
    '}',
    '',
  ].join('\n')
}

function haproxyConfig (dir: string, b: Backends, at: ProxyAddresses, maxConnections: number): string {
  const servers = (name: string, list: Endpoint[]): string[] => list.map((e, i) => `  server ${name}${i + 1} ${hp(e)}`)
  return [
    'global',
    '  nbthread 1',
    `  maxconn ${maxConnections}`,
    `  pidfile ${dir}/haproxy.pid`,
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    'listen http',
    `  bind ${hp(at.http as Endpoint)}`,
    '  balance roundrobin',
    ...servers('h', b.http),
    'listen bulk',
    `  bind ${hp(at.bulk as Endpoint)}`,
    ...servers('b', b.bulk),
    '',
  ].join('\n')
}

/** Run time (ns, all threads) and utime/stime (µs, 10 ms steps) of a process, from /proc. */
export function procCpu (pid: number): { user: number, system: number, total: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const tick = 1e6 / CLK_TCK
  const user = Number(f[11]) * tick // utime is field 14: the 12th after "state"
  const system = Number(f[12]) * tick
  let ns = 0
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try { ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]) } catch { /* a thread that ended */ }
  }
  return { user, system, total: ns / 1000 }
}

/** Resident memory of a process, KiB (VmRSS). */
export function procRssKiB (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? 0 : Number(m[1])
}

/**
 * Starts nginx or HAProxy in front of `backends`; resolves when every listener answers.
 * `maxConnections`: pairs it must be able to hold (the idle-memory bench asks for ~10,000).
 * `halfClose`: nginx's http server too gets `proxy_half_close on` (bench/syscalls.ts's nginx-hc).
 */
export async function startExternal (name: ExternalName, backends: Backends, maxConnections = 4096, opts: { halfClose?: boolean } = {}): Promise<Child<ProxyAddresses>> {
  const dir = mkdtempSync(join(tmpdir(), `svcproxy-bench-${name}-`))
  const base = ADDR[name]
  const at: ProxyAddresses = {
    http: { ip: `${base}.1`, port: await freePortOn(`${base}.1`) },
    bulk: { ip: `${base}.2`, port: await freePortOn(`${base}.2`) },
    udp: name === 'nginx' ? { ip: `${base}.3`, port: await freePortOn(`${base}.3`, true) } : null,
    notes: name === 'nginx' ? {} : { udp: 'HAProxy has no UDP proxying' },
  }
  const conf = join(dir, `${name}.conf`)
  let proc: ChildProcess
  if (name === 'nginx') {
    writeFileSync(conf, nginxConfig(dir, backends, at, maxConnections, opts.halfClose === true))
    proc = spawn('nginx', ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] })
  } else {
    writeFileSync(conf, haproxyConfig(dir, backends, at, maxConnections))
    proc = spawn('haproxy', ['-db', '-f', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
  }
  let stderr = ''
  proc.stderr?.on('data', (c: Buffer) => { stderr += c.toString() })
  const exited = once(proc, 'exit')
  let gone = false
  void exited.then(() => { gone = true })
  const cleanup = (): void => { rmSync(dir, { recursive: true, force: true }) }
  // Ready when the TCP listeners accept.
  const deadline = Date.now() + 10_000
  for (const ep of [at.http, at.bulk]) {
    while (true) {
      if (gone) { cleanup(); throw new Error(`${name} exited: ${stderr.trim().slice(-600)}`) }
      if (await accepts(ep as Endpoint)) break
      if (Date.now() > deadline) { proc.kill('SIGKILL'); cleanup(); throw new Error(`${name}: not listening after 10 s: ${stderr.trim().slice(-600)}`) }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  const pid = proc.pid ?? 0
  let stopped = false
  return {
    name,
    pid,
    data: at,
    async cpu () { return procCpu(pid) },
    async stop () {
      if (stopped) return
      stopped = true
      if (!gone) {
        proc.kill('SIGTERM')
        const t = setTimeout(() => proc.kill('SIGKILL'), 3000)
        await exited
        clearTimeout(t)
      }
      cleanup()
    },
  }
}

function accepts (ep: Endpoint): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect({ host: ep.ip, port: ep.port })
    c.on('connect', () => { c.destroy(); resolve(true) })
    c.on('error', () => resolve(false))
  })
}
