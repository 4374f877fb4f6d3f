import { type ParseArgsConfig, parseArgs } from 'node:util'
import { DEFAULTS } from '../defaults.js'
import { ConfigError } from '../errors.js'
import { formatDuration } from '../util/duration.js'

type OptionSpec = NonNullable<ParseArgsConfig['options']>[string] & { help: string, arg?: string, default?: string | boolean }

/**
 * Every flag of every command, named as kube-proxy names it where the concept is the same.
 * `commands` says which commands take the flag; --help prints from this table, so the help
 * text cannot drift from what is parsed, and test/registries.test.ts holds docs/cli.md to it.
 */
export const FLAGS: Record<string, OptionSpec & { commands: string[] }> = {
  config: { type: 'string', arg: 'FILE', help: 'Manifest file to serve and watch (Service/Endpoints/EndpointSlice/Pod JSON, kubectl -o json output).', commands: ['run'] },
  filename: { type: 'string', short: 'f', arg: 'FILE', help: 'Manifest file to read.', commands: ['validate', 'apply', 'delete'] },
  'bind-address': { type: 'string', arg: 'IP', default: DEFAULTS.bindAddress, help: 'Address NodePorts listen on when --nodeport-addresses is not set (kube-proxy: the proxy server\'s address).', commands: ['run', 'demo'] },
  'hostname-override': { type: 'string', arg: 'NAME', help: 'This node\'s name, matched against endpoints\' nodeName for traffic policy Local. Default: the host name.', commands: ['run', 'demo'] },
  'nodeport-addresses': { type: 'string', arg: 'CIDRS', help: 'Comma-separated CIDRs; NodePorts listen on each local interface address inside them (e.g. 127.0.0.1/32).', commands: ['run', 'demo'] },
  'service-cluster-ip-range': { type: 'string', arg: 'CIDR', default: DEFAULTS.serviceClusterIPRange, help: 'Range clusterIPs are allocated from when a Service has none. A loopback range works without privileges.', commands: ['run', 'demo', 'validate', 'apply'] },
  'service-node-port-range': { type: 'string', arg: 'MIN-MAX', default: DEFAULTS.serviceNodePortRange, help: 'Range nodePorts are allocated from and checked against.', commands: ['run', 'demo', 'validate', 'apply'] },
  'load-balancer': { type: 'string', arg: 'ALGO', default: DEFAULTS.loadBalancer, help: 'Default endpoint choice: round-robin, random, least-connections, p2c or hash (client address, the same on every node; docs/services.md). Per service: annotation svcproxy.io/load-balancer.', commands: ['run', 'demo'] },
  'udp-timeout': { type: 'string', arg: 'DURATION', default: formatDuration(DEFAULTS.udpTimeoutMs), help: 'Idle time after which a UDP session is closed, refreshed by traffic either way.', commands: ['run', 'demo'] },
  'udp-max-sessions': { type: 'string', arg: 'N', default: String(DEFAULTS.udpMaxSessions), help: 'UDP sessions per service port; datagrams from new clients beyond it are dropped and counted.', commands: ['run', 'demo'] },
  'max-connections': { type: 'string', arg: 'N', default: String(DEFAULTS.maxConnections), help: 'TCP connections open at once across every service port; new ones beyond it are reset and counted (svcproxy_connections_rejected_total). 0: no limit. Per service: annotation svcproxy.io/max-connections.', commands: ['run', 'demo'] },
  engine: { type: 'string', arg: 'ENGINE', default: DEFAULTS.engine, help: 'What moves the bytes: uv (libuv TCP/UDP handles driven directly; falls back to node, logged, where Node lacks them) or node (net.Socket and dgram). See docs/performance.md.', commands: ['run', 'demo'] },
  'proxy-protocol': { type: 'string', arg: 'MODE', default: DEFAULTS.proxyProtocol, help: 'PROXY protocol header sent to endpoints before any client byte, carrying the client\'s address and the address it connected to: none, v1 (text, TCP only; UDP ports send none) or v2 (binary; TCP, and UDP with one header per datagram). Per service: annotation svcproxy.io/proxy-protocol. See docs/proxy-protocol.md.', commands: ['run', 'demo'] },
  'outlier-consecutive-failures': { type: 'string', arg: 'N', default: String(DEFAULTS.outlierConsecutiveFailures), help: 'Outlier ejection: an endpoint whose dials fail N times in a row (refused, timed out) gets no new connections for a while (svcproxy_endpoint_ejections_total). 0: off. Per service: annotation svcproxy.io/outlier-consecutive-failures. See docs/health.md.', commands: ['run', 'demo'] },
  'outlier-base-ejection-time': { type: 'string', arg: 'DURATION', default: formatDuration(DEFAULTS.outlierBaseEjectionTimeMs), help: 'Outlier ejection: how long an ejected endpoint is out, times the number of times it was ejected (then back on probation: one failure ejects it again). Per service: svcproxy.io/outlier-base-ejection-time.', commands: ['run', 'demo'] },
  'outlier-max-ejection-time': { type: 'string', arg: 'DURATION', default: formatDuration(DEFAULTS.outlierMaxEjectionTimeMs), help: 'Outlier ejection: the longest an endpoint stays ejected. Per service: svcproxy.io/outlier-max-ejection-time.', commands: ['run', 'demo'] },
  'outlier-max-ejection-percent': { type: 'string', arg: 'N', default: String(DEFAULTS.outlierMaxEjectionPercent), help: 'Outlier ejection: most of a service port\'s endpoints ejected at once, in percent (at least one may be, never all). Per service: svcproxy.io/outlier-max-ejection-percent.', commands: ['run', 'demo'] },
  'tcp-idle-timeout': { type: 'string', arg: 'DURATION', default: formatDuration(DEFAULTS.tcpIdleTimeoutMs), help: 'Close established TCP connections that carried no bytes either way for this long. 0s: never (kube-proxy\'s behaviour).', commands: ['run', 'demo'] },
  'shutdown-grace': { type: 'string', arg: 'DURATION', default: formatDuration(DEFAULTS.shutdownGraceMs), help: 'On SIGTERM/SIGINT, how long established connections may finish before they are closed.', commands: ['run', 'demo'] },
  'log-level': { type: 'string', arg: 'LEVEL', default: DEFAULTS.logLevel, help: 'pino level: fatal, error, warn, info, debug, trace or silent.', commands: ['run', 'demo', 'apply', 'delete', 'cleanup'] },
  port: { type: 'string', arg: 'PORT', default: String(DEFAULTS.demoPort), help: 'demo: the Service port.', commands: ['demo'] },
  'healthz-bind-address': { type: 'string', arg: 'IP:PORT', default: DEFAULTS.healthzBindAddress, help: 'Serve /healthz, /livez, /readyz here. "" disables; port 0 picks a free port.', commands: ['run', 'demo'] },
  'healthz-max-loop-delay': { type: 'string', arg: 'DURATION', default: formatDuration(DEFAULTS.healthzMaxLoopDelayMs), help: '/healthz answers 503 while the event loop is blocked longer than this, and for as long again after it (a blocked loop applies no update and serves no connection). 0s: off.', commands: ['run', 'demo'] },
  'metrics-bind-address': { type: 'string', arg: 'IP:PORT', default: DEFAULTS.metricsBindAddress, help: 'Serve /metrics, /v1/services, /v1/endpoints (and the health paths) here. "" disables; port 0 picks a free port. status: the daemon to ask.', commands: ['run', 'demo', 'status'] },
  'access-log': { type: 'boolean', help: 'Log one line per connection when it ends: client, service, endpoint, bytes each way, duration, close reason.', commands: ['run', 'demo'] },
  'toxiproxy-address': { type: 'string', arg: 'IP:PORT', default: DEFAULTS.toxiproxyAddress, help: 'Serve a Toxiproxy-compatible API here (Toxiproxy\'s is 127.0.0.1:8474): its clients create proxies and add toxics; every service port is a proxy named NAME.NAMESPACE:PORT. Loopback only unless --toxiproxy-allow-remote. Off when not given. See docs/toxiproxy.md.', commands: ['run', 'demo'] },
  'toxiproxy-allow-remote': { type: 'boolean', help: 'Let --toxiproxy-address be a non-loopback address (the API has no authentication and breaks connections on purpose).', commands: ['run', 'demo'] },
  server: { type: 'string', arg: 'URL', help: 'status: the daemon\'s admin URL (e.g. http://127.0.0.1:10249); overrides --metrics-bind-address.', commands: ['status'] },
  watch: { type: 'boolean', short: 'w', help: 'status: redraw in place every second, with state, rates and the sync source\'s health (the stats page\'s view, from /v1/stats), until Ctrl-C.', commands: ['status'] },
  redis: { type: 'string', arg: 'URL', help: 'The shared store: redis://[:PASSWORD@]HOST:PORT[/DB], rediss:// (TLS), redis+sentinel://H1,H2/MASTER, redis+cluster://H1,H2. Default: $REDIS_URL. run: follow it instead of --config.', commands: ['run', 'apply', 'delete', 'get'] },
  'redis-ca-file': { type: 'string', arg: 'FILE', help: 'rediss://: PEM file of the CA that signed the server\'s certificate (default: Node\'s root CAs).', commands: ['run', 'apply', 'delete', 'get'] },
  'redis-cert-file': { type: 'string', arg: 'FILE', help: 'rediss://: PEM client certificate, for a server with tls-auth-clients yes (with --redis-key-file).', commands: ['run', 'apply', 'delete', 'get'] },
  'redis-key-file': { type: 'string', arg: 'FILE', help: 'rediss://: PEM private key of --redis-cert-file.', commands: ['run', 'apply', 'delete', 'get'] },
  'redis-key-prefix': { type: 'string', arg: 'PREFIX', default: DEFAULTS.redisKeyPrefix, help: 'Prefix of every key in the store (keep a {hash tag} for Redis Cluster).', commands: ['run', 'apply', 'delete', 'get'] },
  'sync-period': { type: 'string', arg: 'DURATION', default: formatDuration(DEFAULTS.syncPeriodMs), help: 'run --redis: resync period: rebinds listeners in error and checks the store\'s epoch and revision, relisting only when the watch missed something (kube-proxy --iptables-sync-period).', commands: ['run'] },
  'state-file': { type: 'string', arg: 'FILE', help: 'run --redis: last-known-good snapshot, written (0600) after each applied revision; served when Redis is unreachable at start.', commands: ['run'] },
  namespace: { type: 'string', short: 'n', arg: 'NS', help: 'get: only this namespace.', commands: ['get'] },
  output: { type: 'string', short: 'o', arg: 'FORMAT', help: 'get: json for a kubectl-style List of the stored objects; a table when omitted.', commands: ['get'] },
  'vip-interface': { type: 'string', arg: 'NAME', help: 'Own the service addresses on this node: create the link NAME when missing and keep on it every clusterIP, externalIP and load-balancer IP to bind that is not local already (added before binding, removed when no service needs it, leftovers pruned at start). Needs CAP_NET_ADMIN. Off when not given: 127/8 addresses need none. cleanup: the link to remove. See docs/node.md.', commands: ['run', 'cleanup'] },
  help: { type: 'boolean', short: 'h', help: 'Show help.', commands: ['*'] },
}

export type FlagValues = Record<string, string | boolean | undefined>

/** `values` with the defaults filled in; `given`: the flags on the command line (a default is not given). */
export function parseFlags (command: string, argv: string[]): { values: FlagValues, positionals: string[], given: Set<string> } {
  const options: NonNullable<ParseArgsConfig['options']> = {}
  const known = new Set<string>()
  for (const [name, spec] of Object.entries(FLAGS)) {
    if (!spec.commands.includes(command) && !spec.commands.includes('*')) continue
    options[name] = spec.short !== undefined ? { type: spec.type, short: spec.short } : { type: spec.type }
    known.add(`--${name}`)
    if (spec.short !== undefined) known.add(`-${spec.short}`)
  }
  // parseArgs takes a value starting with '-' for a flag ("--udp-timeout -1s" is "ambiguous"):
  // one that is not a flag of the command is the value, checked like any other.
  const args: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? ''
    const next = argv[i + 1]
    if (options[a.replace(/^--/, '')]?.type === 'string' && a.startsWith('--') && next !== undefined && next.startsWith('-') && next !== '-' && !known.has(next.split('=')[0] ?? '')) {
      args.push(`${a}=${next}`)
      i++
    } else {
      args.push(a)
    }
  }
  try {
    const { values, positionals } = parseArgs({ args, options, strict: true, allowPositionals: true })
    const out: FlagValues = {}
    for (const [name, spec] of Object.entries(FLAGS)) {
      const v = (values as Record<string, string | boolean | undefined>)[name]
      out[name] = v ?? (spec.commands.includes(command) ? spec.default : undefined)
    }
    return { values: out, positionals, given: new Set(Object.keys(values)) }
  } catch (err) {
    const msg = (err as Error).message
    // A flag followed by another flag where its value should be: say so in our words.
    const amb = /^Option '(-\S+?)(?:, (--\S+))?' argument is ambiguous/.exec(msg)
    if (amb !== null) throw new ConfigError(`${amb[2] ?? amb[1] ?? ''}: expected a value, got the flag that follows it (see svcproxy ${command} --help)`)
    // main() prefixes `svcproxy <command>:`; Node's hint about '--' positionals is noise here.
    const first = (msg.split('\n')[0] ?? '').replace(/\. To specify a positional argument.*$/, '')
    throw new ConfigError(`${first} (see svcproxy ${command} --help)`)
  }
}

export function str (values: FlagValues, name: string): string | undefined {
  const v = values[name]
  return typeof v === 'string' ? v : undefined
}

export function int (values: FlagValues, name: string, min: number, max: number): number {
  const raw = str(values, name) ?? ''
  const n = Number(raw)
  if (!/^\d+$/.test(raw) || n < min || n > max) throw new ConfigError(`--${name}: expected an integer ${min}-${max}, got "${raw}"`)
  return n
}

export const COMMANDS: Record<string, string> = {
  run: 'Serve the services of a manifest file (--config) or a Redis store (--redis / REDIS_URL), following its changes.',
  demo: 'Start three local HTTP pods and a Service in front of them; print the curl to try.',
  validate: 'Check a manifest file (-f); print every error and exit 1 if any.',
  status: 'Show the running daemon\'s services, addresses, endpoints and active connections.',
  apply: 'Create or replace the objects of a manifest file (-f) in the Redis store (--redis), all at one revision.',
  delete: 'Delete the objects of a file (-f), or "service|endpoints|endpointslice|pod NAMESPACE/NAME", from the Redis store.',
  get: 'List services|endpoints|endpointslices|pods in the Redis store (-n NS, -o json).',
  cleanup: 'Remove the --vip-interface link and every address on it (kube-proxy --cleanup); run after svcproxy stops for good.',
  version: 'Print the svcproxy version (as does svcproxy --version).',
  help: 'Show this help.',
}

export function helpText (command?: string): string {
  const lines: string[] = []
  if (command === undefined || COMMANDS[command] === undefined) {
    lines.push('svcproxy: a userspace TCP/UDP service proxy (kube-proxy userspace mode, for Node.js)', '', 'Usage: svcproxy <command> [flags]', '', 'Commands:')
    for (const [c, h] of Object.entries(COMMANDS)) lines.push(`  ${c.padEnd(10)} ${h}`)
    lines.push('', 'Run "svcproxy <command> --help" for the flags of a command, "svcproxy --version" for the version. Durations: 250ms, 30s, 1m30s.')
    return lines.join('\n')
  }
  lines.push(`Usage: svcproxy ${command} [flags]`, '', COMMANDS[command] ?? '', '', 'Flags:')
  for (const [name, spec] of Object.entries(FLAGS)) {
    if (!spec.commands.includes(command) && !spec.commands.includes('*')) continue
    const left = `${spec.short !== undefined ? `-${spec.short}, ` : '    '}--${name}${spec.arg !== undefined ? ` ${spec.arg}` : ''}`
    const dflt = spec.default !== undefined && spec.default !== false && spec.default !== '' ? ` (default ${String(spec.default)})` : ''
    lines.push(`  ${left.padEnd(34)} ${spec.help}${dflt}`)
  }
  return lines.join('\n')
}
