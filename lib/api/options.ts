import { hostname as osHostname } from 'node:os'
import pino, { type Logger } from 'pino'
import { ALGORITHMS, type Algorithm } from '../balancer/balancer.js'
import { DEFAULTS } from '../defaults.js'
import { ConfigError } from '../errors.js'
import type { Engine } from '../internals/uv-tcp.js'
import { MAX_CONNECTIONS_LIMIT, PROXY_PROTOCOL_MODES, type ProxyProtocolMode } from '../model/annotations.js'
import { isIP } from '../model/ip.js'
import { MAX_CONSECUTIVE_FAILURES, MAX_EJECTION_MS } from '../model/endpoint-health.js'

export interface ProxyOptions {
  /**
   * --vip-interface: a link (created when missing) that holds every service address this node
   * must bind and that is not local already; needs CAP_NET_ADMIN. '' or absent: off (loopback
   * 127/8 addresses need none). See docs/node.md.
   */
  vipInterface?: string
  /** pino logger; silent when omitted (embedded use). */
  logger?: Logger
  /** Bind every listener on port 0 (the kernel picks): many proxies in one test process. */
  ephemeralPorts?: boolean
  /** --service-cluster-ip-range (default 127.96.0.0/16: loopback, works without privileges). */
  serviceClusterIPRange?: string
  /** --service-node-port-range, default 30000-32767. */
  serviceNodePortRange?: string
  /** Default algorithm; per service the annotation svcproxy.io/load-balancer wins. */
  loadBalancer?: Algorithm
  /** --hostname-override: this node's name for traffic policy Local. */
  hostname?: string
  /** --bind-address: where NodePorts listen when no --nodeport-addresses is given (default 0.0.0.0). */
  bindAddress?: string
  /** --nodeport-addresses: CIDRs; NodePorts listen on each local address inside them. */
  nodePortAddresses?: string[]
  /** --udp-timeout in ms. */
  udpTimeoutMs?: number
  /** --udp-max-sessions per service port. */
  udpMaxSessions?: number
  /**
   * --engine: what moves the bytes. 'uv' (default): libuv's TCP and UDP handles driven directly,
   * no net.Socket per connection and no dgram event per datagram (through process.binding;
   * where this Node does not offer it, 'node' is used and `engine` on the proxy says so).
   * 'node': Node's documented socket APIs, net.Socket and dgram. See docs/performance.md.
   */
  engine?: Engine
  /**
   * With the 'node' engine: TCP reads into pooled, size-adapting buffers instead of a fresh 64 KiB
   * Buffer per read (default true). false falls back to Node's ordinary 'data' events.
   */
  pooledReads?: boolean
  /**
   * --max-connections: TCP connections open at once across every service port; beyond it a new
   * connection is reset at once and counted. 0 or absent: no limit. Per service: annotation
   * svcproxy.io/max-connections (all its ports together).
   */
  maxConnections?: number
  /** --tcp-idle-timeout in ms: established TCP connections with no bytes either way this long are closed. 0 or absent: off (kube-proxy's default). */
  tcpIdleTimeoutMs?: number
  /**
   * What a write (apply, write, replace, delete) does when some of its listeners cannot bind
   * (EADDRINUSE, EADDRNOTAVAIL, ...). false (default): it resolves and lists them in
   * `ApplyResult.failed`. true: it rejects with BindError (SVCPROXY_BIND) naming them. Either
   * way the change stays applied and the listeners are retried with backoff (docs/api.md).
   */
  strictBind?: boolean
  /**
   * Outlier ejection defaults (--outlier-*; per service the svcproxy.io/outlier-* annotations win;
   * docs/health.md): an endpoint whose dials fail `outlierConsecutiveFailures` times in a row
   * (0: off) gets no new connections for `outlierBaseEjectionTimeMs` × times ejected, at most
   * `outlierMaxEjectionTimeMs`; at most `outlierMaxEjectionPercent` of a port's endpoints at once.
   */
  outlierConsecutiveFailures?: number
  outlierBaseEjectionTimeMs?: number
  outlierMaxEjectionTimeMs?: number
  outlierMaxEjectionPercent?: number
  /**
   * --proxy-protocol: the PROXY protocol header endpoints get before any client byte ('v1': text,
   * TCP only; 'v2': binary, TCP and UDP, one header per datagram; 'none', the default). Per
   * service: annotation svcproxy.io/proxy-protocol. See docs/proxy-protocol.md.
   */
  proxyProtocol?: ProxyProtocolMode
  /**
   * A safe integer: every random choice of the data plane (the `random` algorithm, a fault's
   * toxicity, jitter) draws from a PRNG seeded with it, so a test sees the same choices on every
   * run. null or absent: Math.random.
   */
  seed?: number | null
}

/** ProxyOptions with every default filled in and every value checked. */
export type ResolvedOptions = Required<ProxyOptions>

/** Highest --udp-max-sessions. */
export const MAX_UDP_SESSIONS = 10_000_000

const ENGINES: readonly Engine[] = ['uv', 'node']

/**
 * Checks every option up front: a wrong value is a ConfigError (SVCPROXY_CONFIG) naming the
 * option and what was expected, before anything is bound. Unknown option names are refused
 * too (a misspelt option silently ignored is a setting silently lost).
 */
export function resolveOptions (o: ProxyOptions): ResolvedOptions {
  if (typeof o !== 'object' || o === null) throw new ConfigError(`createProxy options: expected an object, got ${describe(o)}`)
  for (const k of Object.keys(o)) if (!KNOWN.has(k)) throw new ConfigError(`createProxy options: unknown option "${k}" (known: ${[...KNOWN].join(', ')})`)
  const r: ResolvedOptions = {
    logger: o.logger ?? pino({ level: 'silent' }),
    ephemeralPorts: bool(o, 'ephemeralPorts', false),
    serviceClusterIPRange: str(o, 'serviceClusterIPRange', DEFAULTS.serviceClusterIPRange),
    serviceNodePortRange: str(o, 'serviceNodePortRange', DEFAULTS.serviceNodePortRange),
    loadBalancer: oneOf(o, 'loadBalancer', ALGORITHMS, DEFAULTS.loadBalancer),
    hostname: str(o, 'hostname', ''),
    bindAddress: str(o, 'bindAddress', DEFAULTS.bindAddress),
    nodePortAddresses: o.nodePortAddresses ?? [],
    udpTimeoutMs: num(o, 'udpTimeoutMs', DEFAULTS.udpTimeoutMs, 1, Number.MAX_SAFE_INTEGER, 'a duration in ms >= 1'),
    udpMaxSessions: int(o, 'udpMaxSessions', DEFAULTS.udpMaxSessions, 1, MAX_UDP_SESSIONS),
    engine: oneOf(o, 'engine', ENGINES, DEFAULTS.engine),
    pooledReads: bool(o, 'pooledReads', true),
    maxConnections: int(o, 'maxConnections', DEFAULTS.maxConnections, 0, MAX_CONNECTIONS_LIMIT),
    tcpIdleTimeoutMs: num(o, 'tcpIdleTimeoutMs', DEFAULTS.tcpIdleTimeoutMs, 0, Number.MAX_SAFE_INTEGER, 'a duration in ms >= 0'),
    vipInterface: str(o, 'vipInterface', ''),
    strictBind: bool(o, 'strictBind', DEFAULTS.strictBind),
    outlierConsecutiveFailures: int(o, 'outlierConsecutiveFailures', DEFAULTS.outlierConsecutiveFailures, 0, MAX_CONSECUTIVE_FAILURES),
    outlierBaseEjectionTimeMs: num(o, 'outlierBaseEjectionTimeMs', DEFAULTS.outlierBaseEjectionTimeMs, 1, MAX_EJECTION_MS, 'a duration in ms from 1 to 86400000'),
    outlierMaxEjectionTimeMs: num(o, 'outlierMaxEjectionTimeMs', DEFAULTS.outlierMaxEjectionTimeMs, 1, MAX_EJECTION_MS, 'a duration in ms from 1 to 86400000'),
    outlierMaxEjectionPercent: int(o, 'outlierMaxEjectionPercent', DEFAULTS.outlierMaxEjectionPercent, 0, 100),
    proxyProtocol: oneOf(o, 'proxyProtocol', PROXY_PROTOCOL_MODES, DEFAULTS.proxyProtocol),
    seed: seedOf(o.seed),
  }
  if (r.vipInterface !== '' && !/^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,14}$/.test(r.vipInterface)) {
    throw new ConfigError(`vipInterface: expected a link name of 1-15 letters, digits, "_", "-" or ".", got ${describe(r.vipInterface)}`)
  }
  if (r.hostname === '') r.hostname = osHostname()
  const logger = r.logger as Partial<Logger>
  if (typeof logger.info !== 'function' || typeof logger.child !== 'function') throw new ConfigError(`logger: expected a pino logger, got ${describe(o.logger)}`)
  // The two ranges are checked by the Table, with the flags' names in its messages.
  if (!isIP(r.bindAddress)) throw new ConfigError(`bindAddress: expected an IP address, got ${describe(r.bindAddress)}`)
  // Each CIDR is parsed (IPv4 only, for now) by the proxy, naming --nodeport-addresses.
  if (!Array.isArray(r.nodePortAddresses) || !r.nodePortAddresses.every((c) => typeof c === 'string')) {
    throw new ConfigError(`nodePortAddresses: expected an array of CIDRs such as 127.0.0.1/32, got ${describe(r.nodePortAddresses)}`)
  }
  return r
}

const KNOWN = new Set<string>(['logger', 'ephemeralPorts', 'serviceClusterIPRange', 'serviceNodePortRange', 'loadBalancer', 'hostname', 'bindAddress', 'nodePortAddresses', 'udpTimeoutMs', 'udpMaxSessions', 'engine', 'pooledReads', 'maxConnections', 'tcpIdleTimeoutMs', 'vipInterface', 'strictBind', 'outlierConsecutiveFailures', 'outlierBaseEjectionTimeMs', 'outlierMaxEjectionTimeMs', 'outlierMaxEjectionPercent', 'proxyProtocol', 'seed'] satisfies Array<keyof ProxyOptions>)

type Key = keyof ProxyOptions

function describe (v: unknown): string {
  return typeof v === 'string' ? `"${v}"` : Array.isArray(v) ? JSON.stringify(v) : String(v)
}

function seedOf (v: unknown): number | null {
  if (v === undefined || v === null) return DEFAULTS.seed
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new ConfigError(`seed: expected an integer (a safe integer, e.g. 42) or null, got ${describe(v)}`)
  return v
}

function bool (o: ProxyOptions, k: Key, dflt: boolean): boolean {
  const v = o[k]
  if (v === undefined) return dflt
  if (typeof v !== 'boolean') throw new ConfigError(`${k}: expected true or false, got ${describe(v)}`)
  return v
}

function str (o: ProxyOptions, k: Key, dflt: string): string {
  const v = o[k]
  if (v === undefined) return dflt
  if (typeof v !== 'string') throw new ConfigError(`${k}: expected a string, got ${describe(v)}`)
  return v
}

function oneOf<T extends string> (o: ProxyOptions, k: Key, allowed: readonly T[], dflt: T): T {
  const v = o[k]
  if (v === undefined) return dflt
  if (!(allowed as readonly unknown[]).includes(v)) throw new ConfigError(`${k}: expected ${allowed.map((a) => `"${a}"`).join(' or ')}, got ${describe(v)}`)
  return v as T
}

function num (o: ProxyOptions, k: Key, dflt: number, min: number, max: number, what: string): number {
  const v = o[k]
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new ConfigError(`${k}: expected ${what}, got ${describe(v)}`)
  return v
}

function int (o: ProxyOptions, k: Key, dflt: number, min: number, max: number): number {
  const v = o[k]
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new ConfigError(`${k}: expected an integer ${min}-${max}, got ${describe(v)}`)
  return v
}
