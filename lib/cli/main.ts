import { readFileSync } from 'node:fs'
import pino, { type Logger } from 'pino'
import { ALGORITHMS, isAlgorithm } from '../balancer/balancer.js'
import { ConfigError, SvcproxyError } from '../errors.js'
import { readDocumentFile } from '../model/document.js'
import { isIP, parseCidr } from '../model/ip.js'
import { parsePortRange } from '../table/allocator.js'
import { MAX_UDP_SESSIONS, type ProxyOptions } from '../api/options.js'
import { MAX_CONNECTIONS_LIMIT, PROXY_PROTOCOL_MODES, type ProxyProtocolMode } from '../model/annotations.js'
import { createProxy, type ServiceProxy } from '../api/service-proxy.js'
import { DEFAULTS } from '../defaults.js'
import { describeError, type FileSource, watchConfigFile } from '../sources/file.js'
import { Table } from '../table/table.js'
import { parseDuration } from '../util/duration.js'
import { MAX_CONSECUTIVE_FAILURES, MAX_EJECTION_MS } from '../model/endpoint-health.js'
import { cleanupVipInterface } from '../host/vip-interface.js'
import { redactUrl } from '../store/connect.js'
import { checkToxiproxyFlags, startAdminFromFlags } from './admin.js'
import { DEMO_CLUSTER_IP, demoManifest, startDemoPods } from './demo.js'
import { COMMANDS, type FlagValues, helpText, int, parseFlags, str } from './flags.js'
import { status } from './status.js'
import { applyCommand, deleteCommand, getCommand, redisUrlOf, startRedisSource } from './store.js'

export interface Io {
  out: (line: string) => void
  err: (line: string) => void
}

const stdio: Io = {
  out: (l) => { process.stdout.write(`${l}\n`) },
  err: (l) => { process.stderr.write(`${l}\n`) },
}

/**
 * The process entry point (bin/svcproxy.ts): runs main() and ends the process with its code.
 * The exit is explicit, whatever the command and however it ended: a handle left open (a Redis
 * client's reconnect timer, a demo pod after a failed start) must never keep the process alive.
 */
export function runCli (argv: string[]): void {
  main(argv).then((code) => {
    process.exitCode = code
    setImmediate(() => process.exit())
  }, (err: unknown) => {
    process.stderr.write(`svcproxy: ${(err as Error).stack ?? String(err)}\n`)
    process.exitCode = 1
    setImmediate(() => process.exit())
  })
}

/** Runs one CLI invocation. Resolves with the exit code; long-running commands resolve on shutdown. */
export async function main (argv: string[], io: Io = stdio): Promise<number> {
  const command = argv[0]
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    io.out(helpText(argv[1]))
    return 0
  }
  if (command === '--version') {
    io.out(`svcproxy ${packageVersion()}`)
    return 0
  }
  if (COMMANDS[command] === undefined) {
    io.err(`svcproxy: unknown command "${command}" (commands: ${Object.keys(COMMANDS).join(', ')})`)
    return 2
  }
  try {
    const { values, positionals, given } = parseFlags(command, argv.slice(1))
    if (values.help === true) {
      io.out(helpText(command))
      return 0
    }
    checkUsage(command, values, positionals, given)
    switch (command) {
      case 'version': io.out(`svcproxy ${packageVersion()}`); return 0
      case 'validate': return await validate(values, positionals, io)
      case 'run': return await run(values, io)
      case 'demo': return await demo(values, io)
      case 'status': return await status(values, io.out)
      case 'apply': return await applyCommand(values, positionals, io)
      case 'delete': return await deleteCommand(values, positionals, io)
      case 'get': return await getCommand(values, positionals, io)
      case 'cleanup': return await cleanup(values, io)
    }
    return 2
  } catch (err) {
    // Startup failures: one clear line, non-zero exit.
    if (err instanceof SvcproxyError) {
      for (const l of describeError(err)) io.err(`svcproxy ${command}: ${l}`)
      return err.code === 'SVCPROXY_CONFIG' ? 2 : 1
    }
    io.err(`svcproxy ${command}: ${(err as Error).message}`)
    return 1
  }
}

/** Positional arguments a command takes; more is a usage error. */
const POSITIONALS: Record<string, number> = { run: 0, demo: 0, status: 0, cleanup: 0, version: 0, validate: 1, apply: 1, get: 1, delete: Infinity }

/** Flags of `run --redis` that a `--config` file has no use for. */
const REDIS_ONLY = ['sync-period', 'state-file', 'redis-key-prefix', 'redis-ca-file', 'redis-cert-file', 'redis-key-file']

/**
 * Usage errors (ConfigError: exit 2), all found before anything starts: an argument the command
 * does not take, a range or address flag that cannot be parsed, flags that do not go together.
 */
function checkUsage (command: string, values: FlagValues, positionals: string[], given: Set<string>): void {
  const max = POSITIONALS[command] ?? 0
  if (positionals.length > max) throw new ConfigError(`unexpected argument "${positionals[max] ?? ''}" (see svcproxy ${command} --help)`)
  if (max === 1 && positionals.length > 0 && given.has('filename')) throw new ConfigError(`-f ${str(values, 'filename') ?? ''} and "${positionals[0] ?? ''}": give the file once`)
  // The allocation ranges, parsed as the table parses them (ConfigError naming the flag), before a store is asked.
  const ports = str(values, 'service-node-port-range')
  if (ports !== undefined) parsePortRange(ports)
  const ips = str(values, 'service-cluster-ip-range')
  if (ips !== undefined) parseCidr(ips, '--service-cluster-ip-range')
  checkToxiproxyFlags(values)
  const bind = str(values, 'bind-address')
  if (bind !== undefined && !isIP(bind)) throw new ConfigError(`--bind-address: expected an IP address such as 0.0.0.0 or 127.0.0.1 (no port, no name), got "${bind}"`)
  // A flag accepted and ignored would mislead: with --config there is no store to relist (the
  // file is watched and polled every second), no snapshot to keep and no key prefix.
  if (command === 'run' && given.has('config')) {
    const redisOnly = REDIS_ONLY.find((f) => given.has(f))
    if (redisOnly !== undefined) throw new ConfigError(`--${redisOnly} applies to run --redis only; a --config file is watched and needs none`)
  }
}

/** svcproxy's package.json version, found upward from this file (lib/cli/ in a checkout, dist/lib/cli/ when built). */
export function packageVersion (): string {
  let dir = new URL('.', import.meta.url)
  for (let i = 0; i < 5; i++, dir = new URL('..', dir)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { name?: unknown, version?: unknown }
      if (pkg.name === 'svcproxy' && typeof pkg.version === 'string') return pkg.version
    } catch { /* not here: one level up */ }
  }
  return 'unknown'
}

async function validate (values: FlagValues, positionals: string[], io: Io): Promise<number> {
  const file = str(values, 'filename') ?? positionals[0]
  if (file === undefined) throw new ConfigError('-f FILE is required')
  // Cross-object rules (clusterIP and nodePort uniqueness) are checked as a fresh table would.
  const table = new Table({ serviceClusterIPRange: str(values, 'service-cluster-ip-range'), serviceNodePortRange: str(values, 'service-node-port-range') })
  try {
    const doc = await readDocumentFile(file)
    for (const w of doc.warnings) io.err(`warning: ${w}`)
    table.write(doc.objects, [], file)
    const counts = new Map<string, number>()
    for (const o of doc.objects) counts.set(o.kind, (counts.get(o.kind) ?? 0) + 1)
    const summary = [...counts].map(([k, n]) => `${n} ${k}`).join(', ')
    io.out(`${file}: valid (${summary === '' ? 'no objects' : summary})`)
    return 0
  } catch (err) {
    if (err instanceof SvcproxyError && err.code === 'SVCPROXY_FILE') throw err
    for (const l of describeError(err)) io.err(l)
    return 1
  }
}

async function cleanup (values: FlagValues, io: Io): Promise<number> {
  const link = str(values, 'vip-interface')
  if (link === undefined || link === '') throw new ConfigError('--vip-interface NAME is required')
  const logger = makeLogger(values, true)
  const n = await cleanupVipInterface(link, logger)
  io.out(n === null ? `svcproxy cleanup: no link ${link}: nothing to remove` : `svcproxy cleanup: removed ${link} and its ${n} address${n === 1 ? '' : 'es'}`)
  return 0
}

/** Logs are pino JSON; `toStderr` keeps stdout for what a person reads (demo, get). */
function makeLogger (values: FlagValues, toStderr = false): Logger {
  const level = str(values, 'log-level') ?? DEFAULTS.logLevel
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(level)) {
    throw new ConfigError(`--log-level: expected fatal, error, warn, info, debug, trace or silent, got "${level}"`)
  }
  return pino({ level, base: { pid: process.pid } }, pino.destination(toStderr ? 2 : 1))
}

function proxyOptions (values: FlagValues, logger: Logger): ProxyOptions {
  const lb = str(values, 'load-balancer') ?? DEFAULTS.loadBalancer
  if (!isAlgorithm(lb)) throw new ConfigError(`--load-balancer: expected ${ALGORITHMS.join(', ')}, got "${lb}"`)
  const npa = str(values, 'nodeport-addresses')
  const engine = str(values, 'engine') ?? DEFAULTS.engine
  if (engine !== 'uv' && engine !== 'node') throw new ConfigError(`--engine: expected uv or node, got "${engine}"`)
  const pp = str(values, 'proxy-protocol') ?? DEFAULTS.proxyProtocol
  if (!(PROXY_PROTOCOL_MODES as readonly string[]).includes(pp)) throw new ConfigError(`--proxy-protocol: expected ${PROXY_PROTOCOL_MODES.join(', ')}, got "${pp}"`)
  return {
    engine,
    logger,
    loadBalancer: lb,
    bindAddress: str(values, 'bind-address'),
    hostname: str(values, 'hostname-override'),
    nodePortAddresses: npa === undefined || npa === '' ? undefined : npa.split(',').map((s) => s.trim()),
    serviceClusterIPRange: str(values, 'service-cluster-ip-range'),
    serviceNodePortRange: str(values, 'service-node-port-range'),
    udpTimeoutMs: durationFlag(values, 'udp-timeout', DEFAULTS.udpTimeoutMs),
    udpMaxSessions: int(values, 'udp-max-sessions', 1, MAX_UDP_SESSIONS),
    maxConnections: int(values, 'max-connections', 0, MAX_CONNECTIONS_LIMIT),
    tcpIdleTimeoutMs: durationFlag(values, 'tcp-idle-timeout', DEFAULTS.tcpIdleTimeoutMs),
    outlierConsecutiveFailures: int(values, 'outlier-consecutive-failures', 0, MAX_CONSECUTIVE_FAILURES),
    outlierBaseEjectionTimeMs: ejectionTime(values, 'outlier-base-ejection-time', DEFAULTS.outlierBaseEjectionTimeMs),
    outlierMaxEjectionTimeMs: ejectionTime(values, 'outlier-max-ejection-time', DEFAULTS.outlierMaxEjectionTimeMs),
    outlierMaxEjectionPercent: int(values, 'outlier-max-ejection-percent', 0, 100),
    vipInterface: str(values, 'vip-interface'),
    proxyProtocol: pp as ProxyProtocolMode,
  }
}

/** An outlier ejection time flag: 1ms to 24h, refused naming the flag. */
function ejectionTime (values: FlagValues, name: string, dflt: number): number {
  const ms = durationFlag(values, name, dflt)
  if (ms < 1 || ms > MAX_EJECTION_MS) throw new ConfigError(`--${name}: expected a duration from 1ms to 24h, such as 30s, got "${str(values, name) ?? ''}"`)
  return ms
}

function durationFlag (values: FlagValues, name: string, dflt: number): number {
  const text = str(values, name)
  return text === undefined ? dflt : parseDuration(text, `--${name}`)
}

async function run (values: FlagValues, io: Io): Promise<number> {
  const config = str(values, 'config')
  // --redis (or REDIS_URL) is the alternative to --config; REDIS_URL alone never overrides a file.
  const redisUrl = config === undefined ? redisUrlOf(values) : str(values, 'redis')
  if (config !== undefined && redisUrl !== undefined) throw new ConfigError('--config and --redis are alternatives; give one')
  if (config === undefined && redisUrl === undefined) throw new ConfigError('--config FILE or --redis URL (or REDIS_URL) is required')
  const logger = makeLogger(values)
  const graceMs = durationFlag(values, 'shutdown-grace', DEFAULTS.shutdownGraceMs)
  const proxy = createProxy(proxyOptions(values, logger))
  let source: Pick<FileSource, 'health' | 'reload' | 'close'>
  try {
    await proxy.ready() // with --vip-interface: the privilege and the link, before anything is served
    source = config !== undefined ? await watchConfigFile(config, proxy, { logger }) : await startRedisSource(redisUrl ?? '', proxy, values, logger)
  } catch (err) {
    await proxy.close()
    throw err
  }
  const admin = await startAdminFromFlags(values, proxy, logger, () => source.health(), io.err).catch(async (err: unknown) => {
    source.close()
    await proxy.close()
    throw err
  })
  io.err(`svcproxy: serving ${config ?? redactUrl(redisUrl ?? '')} (${proxy.status().length} service ports)`)
  return await serveUntilSignal(proxy, logger, graceMs, () => { void source.reload() }, () => { source.close(); void admin.close() }, () => { admin.shuttingDown() })
}

async function demo (values: FlagValues, io: Io): Promise<number> {
  const logger = makeLogger(values, true)
  const graceMs = durationFlag(values, 'shutdown-grace', DEFAULTS.shutdownGraceMs)
  const port = int(values, 'port', 1, 65535)
  // Options are checked (createProxy throws) before any pod listens: a bad flag leaves nothing behind.
  const proxy = createProxy(proxyOptions(values, logger))
  const pods = await startDemoPods()
  try {
    await proxy.apply(demoManifest(port), '<demo>')
    proxy.address('default/hello', 'http') // throws when the port could not bind
  } catch (err) {
    for (const s of pods) s.close()
    await proxy.close()
    throw err
  }
  // Library-style source: what was applied is current (apiHealth, the admin default).
  const admin = await startAdminFromFlags(values, proxy, logger, undefined, io.err).catch(async (err: unknown) => {
    for (const s of pods) s.close()
    await proxy.close()
    throw err
  })
  io.out('svcproxy demo: Service default/hello selects 3 pods (app=hello), each answering with its name.')
  io.out(`Try:   for i in 1 2 3 4 5 6; do curl -s http://${DEMO_CLUSTER_IP}:${port}/; done`)
  io.out('Stop:  Ctrl-C')
  return await serveUntilSignal(proxy, logger, graceMs, () => {}, () => { for (const s of pods) s.close(); void admin.close() }, () => { admin.shuttingDown() })
}

/**
 * SIGTERM/SIGINT: stop accepting at once, drain for the grace period, exit 0; a second
 * signal exits at once. SIGHUP: reload.
 */
function serveUntilSignal (proxy: ServiceProxy, logger: Logger, graceMs: number, reload: () => void, cleanup: () => void, onStop: () => void = () => {}): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting now')
        process.exit(1)
      }
      stopping = true
      onStop()
      logger.info({ signal, graceMs, open: proxy.dataplane.openCount() }, 'shutting down: listeners closed, draining connections')
      void proxy.drain(graceMs).then(() => {
        cleanup()
        process.off('SIGHUP', onHup)
        logger.info('shutdown complete')
        logger.flush()
        resolve(0)
      })
    }
    const onHup = (): void => {
      logger.info('SIGHUP: reloading')
      reload()
    }
    // One listener per signal: `stop` itself tells the first signal from the second. (A `once`
    // listener plus an `if (stopping)` listener both ran on the first SIGTERM and exited 1.)
    process.on('SIGTERM', stop)
    process.on('SIGINT', stop)
    process.on('SIGHUP', onHup)
  })
}
