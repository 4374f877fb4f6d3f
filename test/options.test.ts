// Options in one place: every createProxy option is checked up front (SVCPROXY_CONFIG naming the
// option), and the CLI's flag defaults are the library's DEFAULTS.
import t from 'tap'
import { ConfigError, createProxy, DEFAULTS, type ProxyOptions } from '../lib/index.js'
import { FLAGS } from '../lib/cli/flags.js'
import { parseDuration } from '../lib/util/duration.js'

const bad: Array<[string, Record<string, unknown>]> = [
  ['udpTimeoutMs', { udpTimeoutMs: -5 }],
  ['udpTimeoutMs', { udpTimeoutMs: 0 }],
  ['udpTimeoutMs', { udpTimeoutMs: Number.NaN }],
  ['udpMaxSessions', { udpMaxSessions: 0 }],
  ['udpMaxSessions', { udpMaxSessions: 1.5 }],
  ['tcpIdleTimeoutMs', { tcpIdleTimeoutMs: -5 }],
  ['maxConnections', { maxConnections: -1 }],
  ['maxConnections', { maxConnections: 20_000_000 }],
  ['outlierConsecutiveFailures', { outlierConsecutiveFailures: -1 }],
  ['outlierBaseEjectionTimeMs', { outlierBaseEjectionTimeMs: 0 }],
  ['outlierMaxEjectionTimeMs', { outlierMaxEjectionTimeMs: Number.NaN }],
  ['outlierMaxEjectionPercent', { outlierMaxEjectionPercent: 101 }],
  ['engine', { engine: 'fast' }],
  ['proxyProtocol', { proxyProtocol: 'v3' }],
  ['loadBalancer', { loadBalancer: 'least-conn' }],
  ['ephemeralPorts', { ephemeralPorts: 'yes' }],
  ['pooledReads', { pooledReads: 1 }],
  ['strictBind', { strictBind: 'yes' }],
  ['seed', { seed: 1.5 }],
  ['seed', { seed: '42' }],
  ['bindAddress', { bindAddress: 'localhost' }],
  ['hostname', { hostname: 42 }],
  ['nodePortAddresses', { nodePortAddresses: '127.0.0.1/32' }],
  ['logger', { logger: console.log }],
  ['udpTimeout', { udpTimeout: 1000 }],
]

t.test('every option is validated up front, naming the option', async (t) => {
  for (const [name, opts] of bad) {
    let err: unknown = null
    try {
      const p = createProxy(opts as ProxyOptions)
      await p.close()
    } catch (e) {
      err = e
    }
    t.ok(err instanceof ConfigError && err.code === 'SVCPROXY_CONFIG' && err.message.includes(name), `${JSON.stringify(opts)} refused, naming ${name}: ${String(err)}`)
  }
})

t.test('the defaults are the documented ones', async (t) => {
  const p = createProxy({ ephemeralPorts: true })
  t.teardown(() => p.close())
  t.equal(p.dataplane.ctx.udpTimeoutMs, DEFAULTS.udpTimeoutMs)
  t.equal(p.dataplane.ctx.udpMaxSessions, DEFAULTS.udpMaxSessions)
  t.equal(p.dataplane.ctx.tcpIdleTimeoutMs, DEFAULTS.tcpIdleTimeoutMs)
  t.equal(p.limits.max, DEFAULTS.maxConnections)
  t.equal(p.dataplane.ctx.proxyProtocol, DEFAULTS.proxyProtocol)
})

t.test('the CLI flags default to DEFAULTS', async (t) => {
  const flagOf: Record<string, keyof typeof DEFAULTS> = {
    'service-cluster-ip-range': 'serviceClusterIPRange',
    'service-node-port-range': 'serviceNodePortRange',
    'load-balancer': 'loadBalancer',
    engine: 'engine',
    'proxy-protocol': 'proxyProtocol',
    'bind-address': 'bindAddress',
    'udp-timeout': 'udpTimeoutMs',
    'udp-max-sessions': 'udpMaxSessions',
    'max-connections': 'maxConnections',
    'tcp-idle-timeout': 'tcpIdleTimeoutMs',
    'outlier-consecutive-failures': 'outlierConsecutiveFailures',
    'outlier-base-ejection-time': 'outlierBaseEjectionTimeMs',
    'outlier-max-ejection-time': 'outlierMaxEjectionTimeMs',
    'outlier-max-ejection-percent': 'outlierMaxEjectionPercent',
    'shutdown-grace': 'shutdownGraceMs',
    'log-level': 'logLevel',
    'healthz-bind-address': 'healthzBindAddress',
    'metrics-bind-address': 'metricsBindAddress',
    'toxiproxy-address': 'toxiproxyAddress',
    'healthz-max-loop-delay': 'healthzMaxLoopDelayMs',
    'redis-key-prefix': 'redisKeyPrefix',
    'sync-period': 'syncPeriodMs',
    port: 'demoPort',
  }
  for (const [flag, key] of Object.entries(flagOf)) {
    const d = FLAGS[flag]?.default
    const want = DEFAULTS[key]
    const got = typeof want === 'number' && key.endsWith('Ms') ? parseDuration(String(d), flag) : typeof want === 'number' ? Number(d) : d
    t.equal(got, want, `--${flag}`)
  }
  // Library-only defaults (createProxy options the daemon never sets) have no flag.
  const libraryOnly: Array<keyof typeof DEFAULTS> = ['strictBind', 'seed', 'waitForTimeoutMs', 'eventsBufferSize']
  t.same(Object.values(DEFAULTS).length, Object.keys(flagOf).length + libraryOnly.length, 'every default has its flag, or is library-only')
})
