import pino, { type Logger } from 'pino'
import type { Algorithm } from '../balancer/balancer.js'
import { ConfigError, SvcproxyError } from '../errors.js'
import { readDocumentFile } from '../model/document.js'
import { createProxy, type ServiceProxy, type ProxyOptions } from '../api/service-proxy.js'
import { describeError, type FileSource, watchConfigFile } from '../sources/file.js'
import { Table } from '../table/table.js'
import { parseDuration } from '../util/duration.js'
import { redactUrl } from '../store/connect.js'
import { startAdminFromFlags } from './admin.js'
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

/** Runs one CLI invocation. Resolves with the exit code; long-running commands resolve on shutdown. */
export async function main (argv: string[], io: Io = stdio): Promise<number> {
  const command = argv[0]
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    io.out(helpText(argv[1]))
    return 0
  }
  if (COMMANDS[command] === undefined) {
    io.err(`svcproxy: unknown command "${command}" (commands: ${Object.keys(COMMANDS).join(', ')})`)
    return 2
  }
  try {
    const { values, positionals } = parseFlags(command, argv.slice(1))
    if (values.help === true) {
      io.out(helpText(command))
      return 0
    }
    switch (command) {
      case 'validate': return await validate(values, positionals, io)
      case 'run': return await run(values, io)
      case 'demo': return await demo(values, io)
      case 'status': return await status(values, io.out)
      case 'apply': return await applyCommand(values, positionals, io)
      case 'delete': return await deleteCommand(values, positionals, io)
      case 'get': return await getCommand(values, positionals, io)
    }
    return 2
  } catch (err) {
    // Startup failures: one clear line, non-zero exit.
    if (err instanceof SvcproxyError) {
      for (const l of describeError(err)) io.err(`svcproxy ${command}: ${l}`)
      // A bad --service-node-port-range has exited 1 since it was a plain SyntaxError (other
      // flag errors exit 2); kept, as issue 12 changes no exit status.
      const exitsOne = err.message.startsWith('--service-node-port-range:')
      return err.code === 'SVCPROXY_CONFIG' && !exitsOne ? 2 : 1
    }
    io.err(`svcproxy ${command}: ${(err as Error).message}`)
    return 1
  }
}

async function validate (values: FlagValues, positionals: string[], io: Io): Promise<number> {
  const file = str(values, 'filename') ?? positionals[0]
  if (file === undefined) throw new ConfigError('-f FILE is required')
  try {
    const doc = await readDocumentFile(file)
    for (const w of doc.warnings) io.err(`warning: ${w}`)
    // Cross-object rules (clusterIP and nodePort uniqueness) are checked as a fresh table would.
    const table = new Table({ serviceClusterIPRange: str(values, 'service-cluster-ip-range'), serviceNodePortRange: str(values, 'service-node-port-range') })
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

/** Logs are pino JSON; `toStderr` keeps stdout for what a person reads (demo, get). */
function makeLogger (values: FlagValues, toStderr = false): Logger {
  const level = str(values, 'log-level') ?? 'info'
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(level)) {
    throw new ConfigError(`--log-level: expected fatal, error, warn, info, debug, trace or silent, got "${level}"`)
  }
  return pino({ level, base: { pid: process.pid } }, pino.destination(toStderr ? 2 : 1))
}

function proxyOptions (values: FlagValues, logger: Logger): ProxyOptions {
  const lb = str(values, 'load-balancer') ?? 'round-robin'
  if (lb !== 'round-robin' && lb !== 'random') throw new ConfigError(`--load-balancer: expected round-robin or random, got "${lb}"`)
  const npa = str(values, 'nodeport-addresses')
  const engine = str(values, 'engine') ?? 'uv'
  if (engine !== 'uv' && engine !== 'node') throw new ConfigError(`--engine: expected uv or node, got "${engine}"`)
  return {
    engine,
    logger,
    loadBalancer: lb as Algorithm,
    bindAddress: str(values, 'bind-address'),
    hostname: str(values, 'hostname-override'),
    nodePortAddresses: npa === undefined || npa === '' ? undefined : npa.split(',').map((s) => s.trim()),
    serviceClusterIPRange: str(values, 'service-cluster-ip-range'),
    serviceNodePortRange: str(values, 'service-node-port-range'),
    udpTimeoutMs: parseDuration(str(values, 'udp-timeout') ?? '30s', '--udp-timeout'),
    udpMaxSessions: int(values, 'udp-max-sessions', 1, 10_000_000),
    maxConnections: int(values, 'max-connections', 0, 10_000_000),
    tcpIdleTimeoutMs: parseDuration(str(values, 'tcp-idle-timeout') ?? '0s', '--tcp-idle-timeout'),
  }
}

async function run (values: FlagValues, io: Io): Promise<number> {
  const config = str(values, 'config')
  // --redis (or REDIS_URL) is the alternative to --config; REDIS_URL alone never overrides a file.
  const redisUrl = config === undefined ? redisUrlOf(values) : str(values, 'redis')
  if (config !== undefined && redisUrl !== undefined) throw new ConfigError('--config and --redis are alternatives; give one')
  if (config === undefined && redisUrl === undefined) throw new ConfigError('--config FILE or --redis URL (or REDIS_URL) is required')
  const logger = makeLogger(values)
  const graceMs = parseDuration(str(values, 'shutdown-grace') ?? '30s', '--shutdown-grace')
  const proxy = createProxy(proxyOptions(values, logger))
  let source: Pick<FileSource, 'health' | 'reload' | 'close'>
  try {
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
  const graceMs = parseDuration(str(values, 'shutdown-grace') ?? '30s', '--shutdown-grace')
  const port = int(values, 'port', 1, 65535)
  const pods = await startDemoPods()
  const proxy = createProxy(proxyOptions(values, logger))
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
