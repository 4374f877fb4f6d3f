import { type ParseArgsConfig, parseArgs } from 'node:util'
import { ConfigError } from '../errors.js'

type OptionSpec = NonNullable<ParseArgsConfig['options']>[string] & { help: string, arg?: string, default?: string | boolean }

/**
 * Every flag of every command, named as kube-proxy names it where the concept is the same.
 * `commands` says which commands take the flag; --help prints from this table, so the help
 * text cannot drift from what is parsed.
 */
export const FLAGS: Record<string, OptionSpec & { commands: string[] }> = {
  config: { type: 'string', arg: 'FILE', help: 'Manifest file to serve and watch (Service/Endpoints/EndpointSlice/Pod JSON, kubectl -o json output).', commands: ['run'] },
  filename: { type: 'string', short: 'f', arg: 'FILE', help: 'Manifest file to read.', commands: ['validate', 'apply', 'delete'] },
  'bind-address': { type: 'string', arg: 'IP', default: '0.0.0.0', help: 'Address NodePorts listen on when --nodeport-addresses is not set (kube-proxy: the proxy server\'s address).', commands: ['run', 'demo'] },
  'hostname-override': { type: 'string', arg: 'NAME', help: 'This node\'s name, matched against endpoints\' nodeName for traffic policy Local. Default: the host name.', commands: ['run', 'demo'] },
  'nodeport-addresses': { type: 'string', arg: 'CIDRS', help: 'Comma-separated CIDRs; NodePorts listen on each local interface address inside them (e.g. 127.0.0.1/32).', commands: ['run', 'demo'] },
  'service-cluster-ip-range': { type: 'string', arg: 'CIDR', default: '127.96.0.0/16', help: 'Range clusterIPs are allocated from when a Service has none. A loopback range works without privileges.', commands: ['run', 'demo', 'validate', 'apply'] },
  'service-node-port-range': { type: 'string', arg: 'MIN-MAX', default: '30000-32767', help: 'Range nodePorts are allocated from and checked against.', commands: ['run', 'demo', 'validate', 'apply'] },
  'load-balancer': { type: 'string', arg: 'ALGO', default: 'round-robin', help: 'Default endpoint choice: round-robin or random. Per service: annotation svcproxy.io/load-balancer.', commands: ['run', 'demo'] },
  'udp-timeout': { type: 'string', arg: 'DURATION', default: '30s', help: 'Idle time after which a UDP session is closed, refreshed by traffic either way.', commands: ['run', 'demo'] },
  'udp-max-sessions': { type: 'string', arg: 'N', default: '10000', help: 'UDP sessions per service port; datagrams from new clients beyond it are dropped and counted.', commands: ['run', 'demo'] },
  'shutdown-grace': { type: 'string', arg: 'DURATION', default: '30s', help: 'On SIGTERM/SIGINT, how long established connections may finish before they are closed.', commands: ['run', 'demo'] },
  'log-level': { type: 'string', arg: 'LEVEL', default: 'info', help: 'pino level: fatal, error, warn, info, debug, trace or silent.', commands: ['run', 'demo', 'apply', 'delete'] },
  port: { type: 'string', arg: 'PORT', default: '8080', help: 'demo: the Service port.', commands: ['demo'] },
  help: { type: 'boolean', short: 'h', help: 'Show help.', commands: ['*'] },
}

export type FlagValues = Record<string, string | boolean | undefined>

export function parseFlags (command: string, argv: string[]): { values: FlagValues, positionals: string[] } {
  const options: NonNullable<ParseArgsConfig['options']> = {}
  for (const [name, spec] of Object.entries(FLAGS)) {
    if (!spec.commands.includes(command) && !spec.commands.includes('*')) continue
    options[name] = spec.short !== undefined ? { type: spec.type, short: spec.short } : { type: spec.type }
  }
  try {
    const { values, positionals } = parseArgs({ args: argv, options, strict: true, allowPositionals: true })
    const out: FlagValues = {}
    for (const [name, spec] of Object.entries(FLAGS)) {
      const v = (values as Record<string, string | boolean | undefined>)[name]
      out[name] = v ?? (spec.commands.includes(command) ? spec.default : undefined)
    }
    return { values: out, positionals }
  } catch (err) {
    throw new ConfigError(`svcproxy ${command}: ${(err as Error).message.split('\n')[0] ?? ''} (see svcproxy ${command} --help)`)
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
  run: 'Serve the services of a manifest file (--config), following its changes.',
  demo: 'Start three local HTTP pods and a Service in front of them; print the curl to try.',
  validate: 'Check a manifest file (-f); print every error and exit 1 if any.',
  help: 'Show this help.',
}

export function helpText (command?: string): string {
  const lines: string[] = []
  if (command === undefined || COMMANDS[command] === undefined) {
    lines.push('svcproxy: a userspace TCP/UDP service proxy (kube-proxy userspace mode, for Node.js)', '', 'Usage: svcproxy <command> [flags]', '', 'Commands:')
    for (const [c, h] of Object.entries(COMMANDS)) lines.push(`  ${c.padEnd(10)} ${h}`)
    lines.push('', 'Run "svcproxy <command> --help" for the flags of a command. Durations: 250ms, 30s, 1m30s.')
    return lines.join('\n')
  }
  lines.push(`Usage: svcproxy ${command} [flags]`, '', COMMANDS[command] ?? '', '', 'Flags:')
  for (const [name, spec] of Object.entries(FLAGS)) {
    if (!spec.commands.includes(command) && !spec.commands.includes('*')) continue
    const left = `${spec.short !== undefined ? `-${spec.short}, ` : '    '}--${name}${spec.arg !== undefined ? ` ${spec.arg}` : ''}`
    const dflt = spec.default !== undefined && spec.default !== false ? ` (default ${String(spec.default)})` : ''
    lines.push(`  ${left.padEnd(34)} ${spec.help}${dflt}`)
  }
  return lines.join('\n')
}
